"""What an LREM policy's sampled thoughts could give GRPO: best-of-G against other queries' thoughts.

GRPO can only reinforce thoughts the policy already samples. Per dev query this draws G thoughts
from the model as the RL stage does (temperature 1, seeded), embeds after each, and scores each
with nDCG@10 over the model's own item index. The best of G, picked with the judgments, is the
most a reward could single out, but picking the best of G perturbed embeddings beats a single
one even when the thoughts say nothing about the query. The control is therefore the same
policy's thoughts sampled for other queries (as well-formed and as long, about something else):
best-of-G(own) over best-of-G(other), same queries, paired. Also the greedy, empty and mean
sampled thoughts, and the spread of nDCG@10 inside a group (what group-normalised advantages
amplify). ``--given`` adds
thoughts from a file (the CoT job's output, e.g. the oracle teacher's): what a good thought gives.

    python bench/lrem_headroom.py --model out/train/scifact-lrem-sft/model \
        --index out/index-scifact-lrem-b --given out/cot/scifact-dev-oracle-none.jsonl
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="a train-reasoning model folder")
    ap.add_argument("--index", required=True, help="a flat index of the model's items (encode + index jobs)")
    ap.add_argument("--samples", type=int, default=8, help="G: thoughts per query (the RL stage's num_samples)")
    ap.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (the RL stage's)")
    ap.add_argument("--split", default="dev")
    ap.add_argument("--queries", type=int, default=0, help="first N queries of the split (0: all)")
    ap.add_argument("--given", help="a CoT jsonl ({query, cot} per line): its thoughts as one more row")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data-dir", default=os.environ.get("RAYRAG_DATA_DIR", "../shared/datasets"))
    ap.add_argument("--out", default="out/bench/lrem_headroom.json")
    args = ap.parse_args()
    if args.samples < 2:
        ap.error("--samples must be >= 2")

    import torch

    from rayrag.data import load_beir
    from rayrag.eval.metrics import evaluate_per_query
    from rayrag.eval.significance import paired_randomization_test
    from rayrag.index.store import load_index
    from rayrag.index.topk import top_k_rows
    from rayrag.models.reasoning import load_reasoning
    from rayrag.models.reasoning_encoder import read_thoughts

    torch.set_num_threads(args.threads)
    ds = load_beir(Path(args.data_dir) / "scifact", args.split)
    qids = sorted(ds.queries)[:args.queries or None]
    texts = [ds.queries[q] for q in qids]
    rm = load_reasoning(args.model, device="cpu")
    idx = load_index(args.index, expected_dim=rm.dim, passages=False)
    items = idx.index.reconstruct_n(0, idx.index.ntotal)  # flat: the stored vectors themselves
    G = args.samples

    def ndcg(emb: np.ndarray) -> np.ndarray:
        """[N, H] query embeddings (row i for qids[i]) -> nDCG@10 per query."""
        top, vals = top_k_rows(emb @ items.T, 10)
        run = {q: [(idx.ids[j], float(s)) for j, s in zip(top[i], vals[i])] for i, q in enumerate(qids)}
        per = evaluate_per_query({q: ds.qrels[q] for q in qids}, run, ["ndcg@10"])
        return np.array([per[q]["ndcg@10"] for q in qids])

    prompts = rm.query_prompts(texts)

    def after(thoughts: list[list[int]]) -> np.ndarray:
        return ndcg(rm.embed(rm.query_with_cot(prompts, thoughts), desc=None))

    rows: dict[str, np.ndarray] = {}
    greedy = [c[0] for c in rm.generate(prompts, desc="greedy")]
    rows["greedy"] = after([c.ids for c in greedy])
    rows["empty"] = after([[] for _ in texts])
    sampled = rm.generate(prompts, sample=True, num_samples=G, seed=args.seed, temperature=args.temperature,
                          desc=f"sample {G} per query")
    s_scores = np.stack([after([cots[g].ids for cots in sampled]) for g in range(G)], axis=1)  # [N, G]
    # the control: G thoughts the policy sampled for other queries (query i gets query i+1+g's
    # g-th sample): as well-formed and as long, but about something else
    n = len(texts)
    o_scores = np.stack([after([sampled[(i + 1 + g) % n][g].ids for i in range(n)]) for g in range(G)], axis=1)
    rows["sampled_mean"], rows["sampled_best"] = s_scores.mean(1), s_scores.max(1)
    rows["other_mean"], rows["other_best"] = o_scores.mean(1), o_scores.max(1)
    if args.given:
        given = read_thoughts(f"file:{args.given}")
        rows["given"] = after(rm.cot_ids([given.get(t, "") for t in texts]))
        rows["given"][[t not in given for t in texts]] = np.nan  # no thought in the file: not scored
    pairs = [("sampled_best", "other_best"), ("sampled_mean", "other_mean"), ("sampled_mean", "empty"),
             ("greedy", "empty"),
             ("sampled_best", "empty")] + ([("given", "empty")] if args.given else [])
    tests = {}
    for a, b in pairs:
        ok = ~(np.isnan(rows[a]) | np.isnan(rows[b]))
        tests[f"{a} vs {b}"] = {"diff": float(np.mean(rows[a][ok] - rows[b][ok])),
                                "p": paired_randomization_test(rows[a][ok], rows[b][ok],
                                                               [str(i) for i in np.flatnonzero(ok)])}
    out = {
        "model": args.model, "index": args.index, "split": args.split, "queries": len(qids), "samples": G,
        "temperature": args.temperature, "ndcg@10": {k: float(np.nanmean(v)) for k, v in rows.items()},
        # the reward's spread inside a group: the within-query standard deviation of nDCG@10
        "within_group_std": {"sampled": float(s_scores.std(1).mean()), "other": float(o_scores.std(1).mean())},
        # queries where some sampled thought beats the empty one, and where none of G does
        "share_best_sampled_above_empty": float(np.mean(rows["sampled_best"] > rows["empty"])),
        "sampled_format_valid": float(np.mean([c.valid for cots in sampled for c in cots])),
        "sampled_cot_tokens": float(np.mean([c.length for cots in sampled for c in cots])),
        "paired": tests,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    for k, v in out["ndcg@10"].items():
        print(f"{k:14s} nDCG@10 {v:.4f}")
    for k, v in tests.items():
        print(f"{k:28s} {v['diff']:+.4f}  p {v['p']:.4f}")
    print(f"within-group std of nDCG@10: sampled {out['within_group_std']['sampled']:.4f}, "
          f"other queries' {out['within_group_std']['other']:.4f}; -> {args.out}")


if __name__ == "__main__":
    main()
