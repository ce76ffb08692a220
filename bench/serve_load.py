"""Serve under sustained load: errors and latency of many requests, then replica memory in a soak.

In one run, on one local Ray, against the shipped Serve app (open access, no reranker):
  1. load: ``--requests`` /search calls (default 10,000) at concurrency ``--concurrency`` (32):
     error count, p50/p99, requests/s;
  2. soak: ``--soak-s`` seconds (default 600) of /search at ``--soak-concurrency``, sampling every
     Serve replica's RSS every ``--sample-s``; the baseline is each replica's RSS after
     ``--warmup-s`` of the soak (allocator and caches settled), and the figure is its growth
     from there to the end (the issue's bound: under 10%).
The load client shares the cores with the server, so the latencies are pessimistic; the error
count and the memory growth are the point. Replica processes are found among this driver's own
descendants (Ray names them ``ray::ServeReplica:<app>:<deployment>``).

    python bench/serve_load.py --index out/quickstart/index-flat [--out out/bench/serve_load.json]
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
os.environ.setdefault("RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S", "60")
os.environ.setdefault("RAY_SERVE_PROXY_HEALTH_CHECK_TIMEOUT_S", "60")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from serve_latency import concurrent, stats  # noqa: E402


def replica_rss() -> dict[str, int]:
    """RSS in bytes of each Serve replica process started under this driver, keyed by title+pid."""
    import psutil

    out = {}
    for p in psutil.Process(os.getpid()).children(recursive=True):
        try:
            title = " ".join(p.cmdline())
            if "ServeReplica" in title:
                # the title's tail names the running method (".handle_request..."), which changes
                name = title.split()[0].split(".")[0]
                out[f"{name}#{p.pid}"] = p.memory_info().rss
        except psutil.Error:
            pass
    return out


def soak(url: str, bodies: list[dict], concurrency: int, seconds: float, warmup_s: float, sample_s: float) -> dict:
    """Fixed-concurrency /search for ``seconds``; replica RSS sampled every ``sample_s``."""
    import httpx

    samples: list[tuple[float, dict[str, int]]] = []

    async def run():
        lat, errors, sent = [], 0, 0
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        t0 = time.perf_counter()
        end = t0 + seconds

        async with httpx.AsyncClient(timeout=120, limits=limits) as c:
            async def worker():
                nonlocal errors, sent
                while time.perf_counter() < end:
                    body = bodies[sent % len(bodies)]
                    sent += 1
                    s = time.perf_counter()
                    try:
                        errors += (await c.post(url + "/search", json=body)).status_code != 200
                    except httpx.HTTPError:
                        errors += 1
                    lat.append(time.perf_counter() - s)

            async def sampler():
                while time.perf_counter() < end:
                    samples.append((time.perf_counter() - t0, await asyncio.to_thread(replica_rss)))
                    await asyncio.sleep(sample_s)
                samples.append((time.perf_counter() - t0, await asyncio.to_thread(replica_rss)))

            await asyncio.gather(sampler(), *(worker() for _ in range(concurrency)))
        return stats(lat, time.perf_counter() - t0, errors)

    load = asyncio.run(run())
    base = next(s for t, s in samples if t >= warmup_s)
    last = samples[-1][1]
    growth = {name: {"baseline_mb": round(rss / 2**20, 1), "end_mb": round(last[name] / 2**20, 1),
                     "max_mb": round(max(s.get(name, 0) for _, s in samples) / 2**20, 1),
                     "growth_pct": round(100 * (last[name] - rss) / rss, 2)}
              for name, rss in base.items() if name in last}
    restarted = sorted(set(base) ^ set(last))  # a replica replaced mid-soak would hide a leak
    return {"load": load, "replicas": growth, "replicas_replaced": restarted,
            "max_growth_pct": max(g["growth_pct"] for g in growth.values()),
            "samples": [(round(t, 1), {k: round(v / 2**20, 1) for k, v in s.items()}) for t, s in samples]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", default="out/quickstart/index-flat")
    ap.add_argument("--data-dir", default=os.environ.get("RAYRAG_DATA_DIR", "../shared/datasets"))
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--soak-s", type=float, default=600)
    ap.add_argument("--soak-concurrency", type=int, default=8)
    ap.add_argument("--warmup-s", type=float, default=60)
    ap.add_argument("--sample-s", type=float, default=10)
    ap.add_argument("--port", type=int, default=18001)
    ap.add_argument("--out", default="out/bench/serve_load.json")
    args = ap.parse_args()
    if args.soak_s and args.warmup_s >= args.soak_s:
        ap.error("--warmup-s must be shorter than --soak-s")

    import ray
    from ray import serve

    from rayrag.data.jsonl import read_jsonl
    from rayrag.ray_utils import start_local_ray
    from rayrag.serve.config import Auth, ServeConfig
    from rayrag.serve.local import start

    queries = [o["text"] for _, o in read_jsonl(Path(args.data_dir) / "scifact" / "queries.jsonl")]
    bodies = [{"query": q, "k": 10} for q in queries]
    cfg = ServeConfig(index=args.index, auth=Auth(api_key_env=None))  # open: the bench measures serving
    results: dict = {"machine": f"{os.cpu_count()} CPUs", "index": args.index, "requests": args.requests,
                     "concurrency": args.concurrency}
    start_local_ray(num_cpus=os.cpu_count(), log_to_driver=False)
    try:
        url = start(cfg, port=args.port)
        concurrent(url, bodies[:64], concurrency=8)  # first calls pay one-off set-up
        print(f"[bench] load: {args.requests} requests at concurrency {args.concurrency}", flush=True)
        results["load"] = concurrent(url, [bodies[i % len(bodies)] for i in range(args.requests)],
                                     concurrency=args.concurrency)
        print(json.dumps(results["load"]), flush=True)
        if args.soak_s:
            print(f"[bench] soak: {args.soak_s:.0f} s at concurrency {args.soak_concurrency}", flush=True)
            results["soak"] = soak(url, bodies, args.soak_concurrency, args.soak_s, args.warmup_s, args.sample_s)
            print(json.dumps({k: v for k, v in results["soak"].items() if k != "samples"}), flush=True)
    finally:
        serve.shutdown()
        ray.shutdown()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"[bench] wrote {out}")


if __name__ == "__main__":
    main()
