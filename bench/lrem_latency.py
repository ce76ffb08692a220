"""LREM at query time: reason-then-embed against direct embedding, same model, same queries.

Per query, one at a time (a search request's shape), from the query text to its normalised
embedding: **direct** embeds ``<query><emb>``; **reason** writes the greedy keyword CoT (at most
the model's ``max_new_tokens``) and embeds after it. Both in this process, on the same cores,
alternating per query so drift hits both alike; the ratio of mean latencies is the figure (the
paper reports 15 ms -> 50 ms online). Also the batched form (all queries at once), and the mean
CoT length, since generation cost grows with it.

    python bench/lrem_latency.py --model out/train/scifact-lrem-sft/model --queries 30
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", required=True, help="a train-reasoning model folder")
    ap.add_argument("--queries", type=int, default=30, help="SciFact dev queries timed")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data-dir", default=os.environ.get("RAYRAG_DATA_DIR", "../shared/datasets"))
    ap.add_argument("--out", default="out/bench/lrem_latency.json")
    args = ap.parse_args()

    import torch

    from rayrag.data import load_beir
    from rayrag.models.reasoning import load_reasoning

    torch.set_num_threads(args.threads)
    ds = load_beir(Path(args.data_dir) / "scifact", "dev")
    texts = [ds.queries[q] for q in sorted(ds.queries)][:args.queries]
    rm = load_reasoning(args.model, device="cpu")

    def direct(batch):
        return rm.embed_queries(batch, reasoning=False)

    def reason(batch):  # the served path: greedy CoT, then the embedding after it
        return rm.embed_queries(batch, reasoning=True)

    direct(texts[:2]), reason(texts[:2])  # warm-up
    t_direct, t_reason, lengths = [], [], []
    for q in texts:
        t0 = time.perf_counter()
        direct([q])
        t1 = time.perf_counter()
        _, cots = reason([q])
        t2 = time.perf_counter()
        t_direct.append(t1 - t0)
        t_reason.append(t2 - t1)
        lengths.append(cots[0].length)
    t0 = time.perf_counter()
    direct(texts)
    t1 = time.perf_counter()
    reason(texts)
    t2 = time.perf_counter()
    result = {"queries": len(texts), "threads": args.threads, "model": args.model,
              "direct_ms_mean": 1000 * float(np.mean(t_direct)), "reason_ms_mean": 1000 * float(np.mean(t_reason)),
              "ratio_one_at_a_time": float(np.mean(t_reason) / np.mean(t_direct)),
              "direct_batched_ms_per_query": 1000 * (t1 - t0) / len(texts),
              "reason_batched_ms_per_query": 1000 * (t2 - t1) / len(texts),
              "ratio_batched": (t2 - t1) / (t1 - t0), "cot_tokens_mean": float(np.mean(lengths))}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
