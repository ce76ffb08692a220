"""(b) FAISS: build time, queries/s and recall@10 against Flat for HNSW and IVF-PQ (+ exact re-scoring).

Real MiniLM embeddings of SciFact (from an encode output) are replicated with Gaussian noise
to --size vectors (default 1M), then searched with the real SciFact query embeddings. Flat
(exact inner product) is the baseline for both speed and recall, measured in the same run.

    python bench/ann.py --embeddings out/quickstart/encode-dense [--size 1000000]
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np


def recall_at(exact: np.ndarray, approx: np.ndarray) -> float:
    k = exact.shape[1]
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(exact, approx)]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--embeddings", default="out/quickstart/encode-dense")
    ap.add_argument("--data-dir", default=os.environ.get("RAYRAG_DATA_DIR", "../shared/datasets"))
    ap.add_argument("--size", type=int, default=1_000_000)
    ap.add_argument("--noise", type=float, default=0.03, help="per-dimension std of the replication noise")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--hnsw-ef-construction", type=int, default=64)
    ap.add_argument("--skip-hnsw", action="store_true")
    args = ap.parse_args()

    import faiss

    from rayrag.data.beir import load_queries
    from rayrag.encode.store import read_dense
    from rayrag.index.faiss_index import FaissParams, build_faiss
    from rayrag.models.dense import DenseEncoder

    faiss.omp_set_num_threads(os.cpu_count() or 1)
    _, base = read_dense(args.embeddings)
    rng = np.random.default_rng(0)
    reps = -(-args.size // len(base))
    xb = np.empty((args.size, base.shape[1]), dtype=np.float32)
    for r in range(reps):  # chunked so peak memory stays ~2x the final matrix
        lo, hi = r * len(base), min((r + 1) * len(base), args.size)
        if lo >= hi:
            break
        chunk = base[: hi - lo] + args.noise * rng.standard_normal((hi - lo, base.shape[1]), dtype=np.float32)
        xb[lo:hi] = chunk / np.linalg.norm(chunk, axis=1, keepdims=True)
    queries = list(load_queries(__import__("pathlib").Path(args.data_dir) / "scifact" / "queries.jsonl").values())
    xq = DenseEncoder("minilm").encode_queries(queries[: args.queries], progress=False)
    print(f"{args.size} vectors x {xb.shape[1]} (SciFact MiniLM x{reps} + N(0, {args.noise}^2) noise), "
          f"{len(xq)} real queries, {faiss.omp_get_max_threads()} threads")

    def bench(name, params):
        t0 = time.perf_counter()
        index = build_faiss(xb, params)
        build = time.perf_counter() - t0
        index.search(xq[:10], 10)
        t0 = time.perf_counter()
        _, rows = index.search(xq, 10)
        qps = len(xq) / (time.perf_counter() - t0)
        return name, build, qps, rows

    results = [bench("flat", FaissParams(kind="flat"))]
    exact = results[0][3]
    configs = [("ivfpq nprobe=32 +rescore x4", FaissParams(kind="ivfpq", pq_m=48, nprobe=32, rescore=4)),
               ("ivfpq nprobe=64 +rescore x4", FaissParams(kind="ivfpq", pq_m=48, nprobe=64, rescore=4)),
               ("ivfpq nprobe=32 no rescore", FaissParams(kind="ivfpq", pq_m=48, nprobe=32, rescore=0))]
    if not args.skip_hnsw:
        configs.insert(0, ("hnsw M=32 efS=128", FaissParams(kind="hnsw", hnsw_m=32, hnsw_ef_search=128,
                                                            hnsw_ef_construction=args.hnsw_ef_construction)))
    for name, p in configs:
        results.append(bench(name, p))
        print(f"  done: {name}", flush=True)
    flat_qps = results[0][2]
    print(f"{'index':<30} {'build s':>9} {'queries/s':>10} {'x Flat':>8} {'recall@10':>10}")
    for name, build, qps, rows in results:
        print(f"{name:<30} {build:>9.1f} {qps:>10.0f} {qps / flat_qps:>8.1f} {recall_at(exact, rows):>10.4f}")


if __name__ == "__main__":
    main()
