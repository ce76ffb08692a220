"""The CPU encode actors' allocator settings (`ray_utils.CPU_WORKER_MALLOC_ENV`) against glibc's defaults.

The same encode job (model, corpus, batch size, actors) runs alternately with the settings the
job ships and with the actors' environment left as it is, ``--rounds`` times each, on one local
Ray that stays up. Per job: wall seconds and the machine's CPU seconds (``/proc/stat``, so run it
on an otherwise idle machine), then the medians and their ratios (defaults over shipped), and
whether both wrote the same shards bit for bit (their sha256). Dense or sparse: the model decides.

    python bench/encode_allocator.py --data-dir ../shared/datasets [--docs 1200 --rounds 3]
    python bench/encode_allocator.py --model splade-tiny --batch-size 16   # the quickstart's sparse encode
"""
from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import encode_arguments, scifact_head  # noqa: E402
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # local Ray on 127.0.0.1 (read at import)


def busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (everything but idle and iowait)."""
    fields = [int(v) for v in open("/proc/stat").readline().split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    ap = encode_arguments(__doc__, docs=1200)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    cores = os.cpu_count() or 1

    import ray

    from rayrag import ray_utils, tracking
    from rayrag.encode.pipeline import EncodeConfig, run_encode
    from rayrag.encode.store import load_manifest

    tmp = Path(tempfile.mkdtemp(prefix="bench-alloc-"))
    os.environ.setdefault("RAYRAG_HOME", str(tmp / "home"))
    corpus = scifact_head(args.data_dir, args.docs, tmp / "corpus.jsonl")
    shipped = dict(ray_utils.CPU_WORKER_MALLOC_ENV)

    tracking.setup()  # the MLflow store's one-off creation, outside every timed job
    ray_utils.start_local_ray(num_cpus=cores)
    rows: dict[str, list[tuple[float, float]]] = {"shipped": [], "defaults": []}
    shards: dict[str, set] = {}
    try:
        for r in range(args.rounds):
            # alternate which goes first, so a drift of the machine falls on both
            for arm in (("shipped", "defaults") if r % 2 == 0 else ("defaults", "shipped")):
                # the job reads the module's dict when it builds its actors' runtime_env
                ray_utils.CPU_WORKER_MALLOC_ENV.clear()
                ray_utils.CPU_WORKER_MALLOC_ENV.update(shipped if arm == "shipped" else {})
                out = tmp / f"{arm}-{r}"
                c0, t0 = busy_seconds(), time.perf_counter()
                run_encode(EncodeConfig(model=args.model, corpus=str(corpus), output_dir=str(out),
                                        batch_size=args.batch_size, max_length=args.max_length,
                                        num_actors=cores, cpus_per_actor=1,
                                        docs_per_shard=max(64, args.docs // (4 * cores))))
                wall, cpu = time.perf_counter() - t0, busy_seconds() - c0
                rows[arm].append((wall, cpu))
                manifest = load_manifest(out)
                shards.setdefault(arm, set())
                shards[arm] |= {(s["shard"], s["sha256"]) for s in manifest["shards"]}
                print(f"round {r} {arm:8s}: {wall:6.1f} s wall, {cpu:6.1f} CPU-s, "
                      f"{manifest['count'] / wall:6.1f} docs/s", flush=True)
    finally:
        ray_utils.CPU_WORKER_MALLOC_ENV.clear()
        ray_utils.CPU_WORKER_MALLOC_ENV.update(shipped)
        ray.shutdown()

    med = {arm: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for arm, v in rows.items()}
    print(f"docs={args.docs} model={args.model} batch={args.batch_size} max_length={args.max_length} "
          f"actors={cores} rounds={args.rounds} shipped={shipped}")
    for arm, (w, c) in med.items():
        print(f"{arm:8s} median: {w:6.1f} s wall, {c:6.1f} CPU-s")
    print(f"ratio defaults/shipped: wall {med['defaults'][0] / med['shipped'][0]:.3f}, "
          f"CPU {med['defaults'][1] / med['shipped'][1]:.3f}")
    # one (shard, sha256) pair per shard when every job of both arms wrote the same bytes
    same = shards["shipped"] == shards["defaults"] and len(shards["shipped"]) == len({k for k, _ in shards["shipped"]})
    print(f"shards identical across all jobs: {same}")


if __name__ == "__main__":
    main()
