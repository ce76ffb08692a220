"""Retriever replica memory: passages read into the replica vs memory-mapped beside the index,
one index vs shards, with the same /search results (issue #18).

SciFact is replicated --times (distinct ids) with its MiniLM vectors replicated with noise (as
bench/ann.py), written as an encode output and indexed by the index job three ways:
  one-corpus   one Flat index, passages=false: the replica reads the corpus into memory (rayrag before #18)
  one-mmap     one Flat index with passages.arrow: memory-mapped
  4-shards     4 Flat shards with their passages.arrow, searched in the replica
Each is served in turn by the Serve app on a local Ray; after --requests searches, /readyz
reports the retriever replica's RSS and its private (anonymous) part: memory-mapped pages it
touched count in RSS but are the node's shared, reclaimable page cache. The 4-shard and mmap
answers are checked against one-corpus's.

    python bench/serve_memory.py --embeddings out/encode-scifact-minilm [--times 20] [--out out/bench/serve_memory.json]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
from _common import replicate_corpus  # noqa: E402


def encode_output(base_dir: Path, corpus: Path, times: int, out: Path) -> int:
    """The replicated corpus's vectors as a finished encode output (the encode job's shard writer)."""
    from rayrag.encode.store import load_manifest, read_dense, write_dense_shard
    from rayrag.io import sha256_file

    ids0, base = read_dense(base_dir)
    rng = np.random.default_rng(0)
    infos = []
    for rep in range(times):
        v = base + 0.03 * rng.standard_normal(base.shape, dtype=np.float32)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        infos.append(write_dense_shard(out, rep, [f"{i}#{rep}" for i in ids0], v))
    m = load_manifest(base_dir)
    manifest = {**{k: m[k] for k in ("kind", "model", "model_version", "dim")}, "count": len(ids0) * times,
                "shards": infos, "corpus": str(corpus), "corpus_sha256": sha256_file(corpus)}
    (out / "manifest.json").write_text(json.dumps(manifest))
    return manifest["count"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--embeddings", default="out/encode-scifact-minilm")
    ap.add_argument("--data-dir", default=os.environ.get("RAYRAG_DATA_DIR", "../shared/datasets"))
    ap.add_argument("--times", type=int, default=20)
    ap.add_argument("--requests", type=int, default=100)
    ap.add_argument("--out", default="out/bench/serve_memory.json")
    args = ap.parse_args()

    import httpx
    import ray
    from ray import serve

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))
    from rayrag.config import from_dict
    from rayrag.data.beir import load_queries
    from rayrag.index.build import IndexConfig, run_index
    from rayrag.index.faiss_index import FaissParams
    from rayrag.ray_utils import start_local_ray
    from rayrag.serve import ray_env
    from rayrag.serve.app import build
    from rayrag.serve.config import ServeConfig
    from rayrag.serve.local import wait_ready

    ray_env.apply()
    queries = list(load_queries(Path(args.data_dir) / "scifact" / "queries.jsonl").values())[: args.requests]
    result = {"times": args.times, "requests": len(queries), "variants": {}}
    with tempfile.TemporaryDirectory(dir="out") as tmp:
        tmp = Path(tmp)
        os.environ["RAYRAG_HOME"] = str(tmp / "home")
        corpus = tmp / "corpus.jsonl"
        replicate_corpus(Path(args.data_dir) / "scifact" / "corpus.jsonl", corpus, args.times)
        n = encode_output(Path(args.embeddings), corpus, args.times, tmp / "enc")
        result.update(docs=n, corpus_mb=round(corpus.stat().st_size / 2**20, 1))
        flat = FaissParams(kind="flat")
        variants = {"one-corpus": dict(passages=False), "one-mmap": {}, "4-shards": dict(shards=4)}
        for name, kw in variants.items():
            run_index(IndexConfig(embeddings=str(tmp / "enc"), output_dir=str(tmp / name), faiss=flat, **kw))
        start_local_ray(num_cpus=2)
        answers = {}
        try:
            serve.start(http_options={"host": "127.0.0.1", "port": 8123})
            for name in variants:
                cfg = from_dict(ServeConfig, {"index": str(tmp / name), "auth": {"api_key_env": None},
                                              "ingress": {"num_cpus": 0.1}, "retriever": {"num_cpus": 0.5}})
                t0 = time.perf_counter()
                serve.run(build(cfg), name=name, route_prefix="/")
                wait_ready("http://127.0.0.1:8123", 600)
                load_s = time.perf_counter() - t0
                with httpx.Client(base_url="http://127.0.0.1:8123", timeout=60) as c:
                    answers[name] = [[(h["id"], round(h["score"], 5), h["text"][:40]) for h in
                                      c.post("/search", json={"query": q, "k": 10}).json()["results"]] for q in queries]
                    status = c.get("/readyz").json()["retriever"]
                folder = tmp / name
                files = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
                result["variants"][name] = {"replica_rss_mb": status["rss_mb"],
                                            "replica_private_mb": status["private_mb"], "shards": status["shards"],
                                            "index_folder_mb": round(files / 2**20, 1), "ready_s": round(load_s, 1)}
                print(name, json.dumps(result["variants"][name]), flush=True)
                serve.delete(name)
        finally:
            serve.shutdown()
            ray.shutdown()
    base = result["variants"]["one-corpus"]
    for v in result["variants"].values():
        v["rss_vs_one_corpus"] = round(v["replica_rss_mb"] / base["replica_rss_mb"], 3)
        v["private_vs_one_corpus"] = round(v["replica_private_mb"] / base["replica_private_mb"], 3)
    result["same_results_4_shards_vs_one"] = answers["4-shards"] == answers["one-corpus"]
    result["same_results_mmap_vs_one"] = answers["one-mmap"] == answers["one-corpus"]
    print(json.dumps({k: v for k, v in result.items() if k != "variants"}))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
