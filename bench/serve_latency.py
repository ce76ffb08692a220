"""Serve latency and throughput for /search, against the same engine called in-process.

In one run, on one local Ray:
  1. in-process baseline: ``SearchEngine.search`` (+ ``RerankEngine.score_pairs`` for the top 20),
     with the replicas' thread count, sequential;
  2. Serve with batching on: /search k=10 without and with reranking the top 20, sequential and
     at concurrency 16 (p50/p99 ms, requests/s);
  3. the same with batching off (``max_batch_size=1``; ``serve.run`` redeploys, so each phase
     starts on fresh replicas and is warmed before it is timed);
  4. load: 2,000 requests at concurrency 16 (batching on), counting errors;
  5. the ceiling: /readyz at concurrency 16 takes the same HTTP and handle hops with no model
     work, so its rate over unbatched /search bounds any batching speed-up on this machine.
Serve overhead = Serve p50 - in-process p50 for the same queries. The client runs on the same
cores as the server (2 here), so absolute numbers are pessimistic; the ratios are the point.

    python bench/serve_latency.py --index out/quickstart/index-flat [--reranker minilm] [--out out/bench/serve.json]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # local Ray on 127.0.0.1 (read at import)
# Serve replaces an HTTP proxy that is not ready within 5 s; a busy 2-core machine needs longer.
os.environ.setdefault("RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S", "60")
os.environ.setdefault("RAY_SERVE_PROXY_HEALTH_CHECK_TIMEOUT_S", "60")
sys.path.insert(0, str(Path(__file__).resolve().parent))


def stats(latencies: list[float], wall: float, errors: int = 0) -> dict:
    import numpy as np

    a = np.array(latencies) * 1000
    return {"n": len(a), "p50_ms": round(float(np.percentile(a, 50)), 2), "p99_ms": round(float(np.percentile(a, 99)), 2),
            "rps": round(len(a) / wall, 1), "errors": errors}


def sequential(url: str, bodies: list[dict]) -> dict:
    import httpx

    lat, errors = [], 0
    with httpx.Client(timeout=120) as c:
        c.post(f"{url}/search", json=bodies[0])  # warm the connection
        t0 = time.perf_counter()
        for b in bodies:
            s = time.perf_counter()
            errors += c.post(f"{url}/search", json=b).status_code != 200
            lat.append(time.perf_counter() - s)
    return stats(lat, time.perf_counter() - t0, errors)


def concurrent(url: str, bodies: list[dict | None], concurrency: int = 16, path: str = "/search") -> dict:
    """``bodies`` are POSTed to ``path``; a None body is a GET of it."""
    import httpx

    async def run():
        lat, errors = [], 0
        queue = list(bodies)
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(timeout=1200, limits=limits) as c:
            async def worker():
                nonlocal errors
                while queue:
                    b = queue.pop()
                    s = time.perf_counter()
                    try:
                        r = await (c.get(url + path) if b is None else c.post(url + path, json=b))
                        errors += r.status_code != 200
                    except httpx.HTTPError:
                        errors += 1
                    lat.append(time.perf_counter() - s)
            t0 = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return stats(lat, time.perf_counter() - t0, errors)
    return asyncio.run(run())


def in_process(cfg, queries: list[str], rerank_queries: list[str]) -> dict:
    import torch

    from rayrag.serve.engine import RerankEngine, SearchEngine

    torch.set_num_threads(cfg.retriever.torch_threads)  # what one replica gets
    engine = SearchEngine(cfg)
    reranker = RerankEngine(cfg) if cfg.reranker else None
    engine.search(queries[:2], 10)
    lat = []
    t0 = time.perf_counter()
    for q in queries:
        s = time.perf_counter()
        hits = engine.search([q], 10)[0]
        [engine.passages[d] for d, _ in hits]
        lat.append(time.perf_counter() - s)
    out = {"search": stats(lat, time.perf_counter() - t0)}
    if reranker:
        lat = []
        t0 = time.perf_counter()
        for q in rerank_queries:
            s = time.perf_counter()
            hits = engine.search([q], 20)[0]
            reranker.score_pairs([q] * len(hits), [engine.passages[d].full_text for d, _ in hits])
            lat.append(time.perf_counter() - s)
        out["search+rerank20"] = stats(lat, time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", default="out/quickstart/index-flat")
    ap.add_argument("--reranker", default="minilm", help="'' for none; minilm = untrained stand-in head (bench only: "
                                                          "served with the development flag)")
    ap.add_argument("--data-dir", default=os.environ.get("RAYRAG_DATA_DIR", "../shared/datasets"))
    ap.add_argument("--sequential", type=int, default=200, help="sequential /search requests per setting")
    ap.add_argument("--concurrent", type=int, default=400, help="requests per concurrency-16 setting")
    ap.add_argument("--rerank-requests", type=int, default=16, help="requests per reranking setting (slow on CPU)")
    ap.add_argument("--reranker-max-length", type=int, default=128, help="tokens per (query, passage) pair")
    ap.add_argument("--load", type=int, default=2000)
    ap.add_argument("--port", type=int, default=18000)
    ap.add_argument("--out", default="out/bench/serve_latency.json")
    args = ap.parse_args()

    import ray
    from ray import serve

    from rayrag.data.jsonl import read_jsonl
    from rayrag.ray_utils import start_local_ray
    from rayrag.serve.app import build
    from rayrag.serve.config import Auth, ServeConfig
    from rayrag.serve.local import start

    queries = [o["text"] for _, o in read_jsonl(Path(args.data_dir) / "scifact" / "queries.jsonl")]
    cfg = ServeConfig(index=args.index, reranker=args.reranker or None, dev_untrained_reranker=True,
                      reranker_max_length=args.reranker_max_length,
                      auth=Auth(api_key_env=None))  # open access: the bench measures serving, not auth
    plain = lambda n: [{"query": queries[i % len(queries)], "k": 10} for i in range(n)]  # noqa: E731
    rr = lambda n: [{"query": queries[i % len(queries)], "k": 10, "rerank": True, "rerank_k": 20}  # noqa: E731
                    for i in range(n)]
    results: dict = {"machine": f"{os.cpu_count()} CPUs", "index": args.index, "reranker": args.reranker,
                     "reranker_max_length": args.reranker_max_length}

    print("[bench] in-process baseline", flush=True)
    results["in_process"] = in_process(cfg, queries[:args.sequential], queries[:args.rerank_requests])

    for attempt in range(3):  # Ray waits a fixed 30 s for its raylet, too short on a busy machine
        try:
            # log_to_driver=False: echoing every replica log line into this client process would
            # bill the client's terminal to Serve (a deployment's logs stay in its files).
            start_local_ray(num_cpus=os.cpu_count(), log_to_driver=False)
            break
        except Exception as e:
            if "timed out during startup" not in str(e) or attempt == 2:
                raise
            ray.shutdown()
    try:
        url = start(cfg, port=args.port)
        for batching in ("on", "off"):
            if batching == "off":
                from dataclasses import replace

                off = replace(cfg, retriever=replace(cfg.retriever, max_batch_size=1),
                              rerank=replace(cfg.rerank, max_batch_size=1))
                serve.run(build(off), name="rayrag", route_prefix="/")  # serve.run redeploys: fresh replicas
            r = results[f"batching_{batching}"] = {}
            print(f"[bench] batching {batching}", flush=True)
            concurrent(url, plain(64))  # fresh replicas: first calls pay one-off kernel and allocator set-up
            r["sequential"] = sequential(url, plain(args.sequential))
            r["c16"] = concurrent(url, plain(args.concurrent))
            if batching == "on":
                # The same hops (proxy -> ingress -> model deployments -> back) with no model work:
                # /readyz asks each deployment for its status. Its rate bounds what any speed-up
                # of the model (batching included) can give /search on this machine.
                r["c16_readyz_no_model"] = concurrent(url, [None] * args.concurrent, path="/readyz")
            if cfg.reranker:
                r["sequential_rerank20"] = sequential(url, rr(args.rerank_requests))
                r["c16_rerank20"] = concurrent(url, rr(args.rerank_requests))
            print(json.dumps(r), flush=True)
        serve.run(build(cfg), name="rayrag", route_prefix="/")  # batching back on
        print(f"[bench] load: {args.load} requests at concurrency 16", flush=True)
        results["load_2000_c16"] = concurrent(url, plain(args.load))
    finally:
        serve.shutdown()
        ray.shutdown()

    on, off, base = results["batching_on"], results["batching_off"], results["in_process"]
    results["serve_overhead_p50_ms"] = round(on["sequential"]["p50_ms"] - base["search"]["p50_ms"], 2)
    results["batching_speedup_c16"] = round(on["c16"]["rps"] / off["c16"]["rps"], 2)
    # the most batching could give if the model cost nothing: the no-model path's rate over /search's
    results["batching_speedup_ceiling_c16"] = round(on["c16_readyz_no_model"]["rps"] / off["c16"]["rps"], 2)
    if cfg.reranker:
        results["serve_overhead_p50_ms_rerank20"] = round(
            on["sequential_rerank20"]["p50_ms"] - base["search+rerank20"]["p50_ms"], 2)
        results["batching_speedup_c16_rerank20"] = round(on["c16_rerank20"]["rps"] / off["c16_rerank20"]["rps"], 2)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
