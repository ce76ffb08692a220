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
    from rayrag.index.faiss_index import FaissParams, build_faiss, set_search_params
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

    def timed_search(index):
        index.search(xq[:10], 10)  # warm-up
        t0 = time.perf_counter()
        _, rows = index.search(xq, 10)
        return len(xq) / (time.perf_counter() - t0), rows

    rows_out = []
    t0 = time.perf_counter()
    flat = build_faiss(xb, FaissParams(kind="flat"))
    flat_build = time.perf_counter() - t0
    flat_qps, exact = timed_search(flat)
    rows_out.append(("flat", flat_build, flat_qps, 1.0))
    del flat
    # Build each ANN index once, then sweep its search-time knobs (no rebuild needed).
    sweeps = [("ivfpq", FaissParams(kind="ivfpq", pq_m=48, nprobe=32, rescore=4),
               [dict(nprobe=n, rescore=r) for n in (32, 64) for r in (0, 4, 16, 64)])]
    if not args.skip_hnsw:
        sweeps.insert(0, ("hnsw", FaissParams(kind="hnsw", hnsw_m=32, hnsw_ef_construction=args.hnsw_ef_construction),
                          [dict(hnsw_ef_search=e) for e in (64, 128, 256, 512)]))
    for kind, params, knobs in sweeps:
        t0 = time.perf_counter()
        index = build_faiss(xb, params)
        build = time.perf_counter() - t0
        print(f"  built {kind} in {build:.0f}s", flush=True)
        for knob in knobs:
            for k, v in knob.items():
                setattr(params, k, v)
            if kind == "ivfpq" and knob["rescore"] == 0:
                search_index = faiss.downcast_index(index.base_index)  # the bare IVF-PQ, no re-scoring
            else:
                search_index = index
            set_search_params(index, params)
            if search_index is not index:
                search_index.nprobe = params.nprobe
            qps, rows = timed_search(search_index)
            label = f"{kind} " + " ".join(f"{k}={v}" for k, v in knob.items())
            rows_out.append((label, build, qps, recall_at(exact, rows)))
        del index
    print(f"{'index':<36} {'build s':>8} {'queries/s':>10} {'x Flat':>7} {'recall@10':>10}")
    for name, build, qps, rec in rows_out:
        print(f"{name:<36} {build:>8.1f} {qps:>10.0f} {qps / flat_qps:>7.1f} {rec:>10.4f}")


if __name__ == "__main__":
    main()
