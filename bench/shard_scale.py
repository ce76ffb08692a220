"""Sharded search at scale on this machine: 1M real-derived vectors in 1, 2 and 4 shards.

Vectors: SciFact's MiniLM embeddings (from an encode output) replicated with Gaussian noise to
--size (as bench/ann.py), searched with real SciFact query embeddings. For each shard count,
the library's own pieces (``train_faiss`` once, ``fill_index`` per shard, ``ShardedIndex`` with
its thread fan-out and exact merge) are timed; every figure is a ratio against the 1-shard
index measured in the same run, and recall@10 is against exact (Flat) search of all vectors.

Reported per configuration: build time (fill; the shared training is reported once), bytes per
shard (FAISS's serialised size: codes, ids, lists; + exact vectors when re-scoring), batch
throughput (all queries in one call), single-query latency p50/p99 (sequential), recall@10,
and the merge's share of search time (``merge_topk`` timed inside the sharded search).

    python bench/shard_scale.py --embeddings out/encode-scifact-minilm [--size 1000000] [--out out/bench/shard_scale.json]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np


def replicate(base: np.ndarray, size: int, noise: float) -> np.ndarray:
    rng = np.random.default_rng(0)
    xb = np.empty((size, base.shape[1]), dtype=np.float32)
    for lo in range(0, size, len(base)):  # chunked so peak memory stays ~2x the final matrix
        hi = min(lo + len(base), size)
        chunk = base[: hi - lo] + noise * rng.standard_normal((hi - lo, base.shape[1]), dtype=np.float32)
        xb[lo:hi] = chunk / np.linalg.norm(chunk, axis=1, keepdims=True)
    return xb


def recall(exact: np.ndarray, rows: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / exact.shape[1] for a, b in zip(exact, rows)]))


class TimedMerge:
    """Wraps ``merge_topk`` in the sharded module to total the time spent merging."""

    def __init__(self):
        import rayrag.index.sharded as sharded

        self.module, self.inner, self.seconds = sharded, sharded.merge_topk, 0.0
        sharded.merge_topk = self

    def __call__(self, *a, **kw):
        t0 = time.perf_counter()
        try:
            return self.inner(*a, **kw)
        finally:
            self.seconds += time.perf_counter() - t0


def measure(index, xq: np.ndarray, exact: np.ndarray, k: int, singles: int, merge: TimedMerge) -> dict:
    index.search(xq[:8], k)  # warm-up
    merge.seconds = 0.0
    t0 = time.perf_counter()
    _, rows = index.search(xq, k)
    batch_s = time.perf_counter() - t0
    batch_merge = merge.seconds
    lat = []
    merge.seconds = 0.0
    for q in xq[:singles]:
        t0 = time.perf_counter()
        index.search(q[None], k)
        lat.append(time.perf_counter() - t0)
    cut = statistics.quantiles(lat, n=100)
    return {"qps_batch": len(xq) / batch_s, "recall@10": recall(exact, rows),
            "single_p50_ms": 1e3 * statistics.median(lat), "single_p99_ms": 1e3 * cut[98],
            "qps_sequential": len(lat) / sum(lat),
            "merge_share_batch": batch_merge / batch_s, "merge_share_single": merge.seconds / sum(lat)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--embeddings", default="out/encode-scifact-minilm")
    ap.add_argument("--data-dir", default=os.environ.get("RAYRAG_DATA_DIR", "../shared/datasets"))
    ap.add_argument("--size", type=int, default=1_000_000)
    ap.add_argument("--noise", type=float, default=0.03)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--singles", type=int, default=200, help="queries timed one at a time")
    ap.add_argument("--shards", default="1,2,4")
    ap.add_argument("--out", default="out/bench/shard_scale.json")
    args = ap.parse_args()

    import faiss

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))
    from rayrag.data.beir import load_queries
    from rayrag.encode.store import read_dense
    from rayrag.index.faiss_index import FaissParams, fill_index, search_faiss, train_faiss, training_rows
    from rayrag.index.sharded import ShardedIndex, local_searcher
    from rayrag.models.dense import DenseEncoder

    faiss.omp_set_num_threads(os.cpu_count() or 1)
    _, base = read_dense(args.embeddings)
    xb = replicate(base, args.size, args.noise)
    texts = list(load_queries(Path(args.data_dir) / "scifact" / "queries.jsonl").values())[: args.queries]
    xq = DenseEncoder("minilm").encode_queries(texts, progress=False)
    k = 10
    t0 = time.perf_counter()
    exact_scores, exact = search_faiss(fill_index(faiss.IndexFlatIP(xb.shape[1]), xb, FaissParams(kind="flat")), xq, k)
    flat_s = time.perf_counter() - t0
    print(f"{args.size} vectors x {xb.shape[1]}, {len(xq)} real queries, {faiss.omp_get_max_threads()} threads; "
          f"exact Flat ground truth in {flat_s:.0f}s", flush=True)
    merge = TimedMerge()
    counts = [int(c) for c in args.shards.split(",")]
    result = {"size": args.size, "dim": int(xb.shape[1]), "queries": len(xq), "threads": faiss.omp_get_max_threads(),
              "configs": []}
    variants = [("flat", FaissParams(kind="flat")),
                ("ivfpq48", FaissParams(kind="ivfpq", pq_m=48, nprobe=32, rescore=0)),
                ("ivfpq48+rescore16", FaissParams(kind="ivfpq", pq_m=48, nprobe=32, rescore=16))]
    trained_ivf = None
    for name, p in variants:
        sample = None
        if p.kind == "ivfpq":
            sample = xb[training_rows(len(xb), p)]
        t0 = time.perf_counter()
        if p.kind == "ivfpq" and trained_ivf is not None:
            trained = trained_ivf  # the same quantizer and codebooks for both IVF-PQ variants
        else:
            trained = train_faiss(sample, xb.shape[1], len(xb), p)
            if p.kind == "ivfpq":
                trained_ivf = trained
        train_s = time.perf_counter() - t0
        for n in counts:
            bounds = np.linspace(0, len(xb), n + 1).astype(int)
            t0 = time.perf_counter()
            shards = [fill_index(trained, xb[a:b], p) for a, b in zip(bounds, bounds[1:])]
            build_s = time.perf_counter() - t0
            sizes = [int(faiss.serialize_index(s).nbytes) for s in shards]
            loaded = [SimpleNamespace(kind="dense", index=s) for s in shards]
            index = ShardedIndex("dense", xb.shape[1], list(np.diff(bounds)), np.array([], np.int64),
                                 [local_searcher(x) for x in loaded])
            row = {"index": name, "shards": n, "train_s": train_s, "fill_s": build_s,
                   "bytes_per_shard": sizes, "bytes_per_vector": sum(sizes) / len(xb),
                   **measure(index, xq, exact, k, args.singles, merge)}
            result["configs"].append(row)
            print(json.dumps({k2: (round(v, 4) if isinstance(v, float) else v) for k2, v in row.items()}), flush=True)
            del shards, loaded, index
    for row in result["configs"]:  # ratios against the 1-shard index of the same kind, same run
        one = next(r for r in result["configs"] if r["index"] == row["index"] and r["shards"] == 1)
        row["qps_batch_vs_1_shard"] = row["qps_batch"] / one["qps_batch"]
        row["single_p50_vs_1_shard"] = row["single_p50_ms"] / one["single_p50_ms"]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
