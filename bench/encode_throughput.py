"""(a) Encode throughput: the Ray Data encode job vs a plain single-process loop.

Same model, batch size, max length and corpus; both use the machine's cores (the plain loop
with torch threads = cores, the job with one single-threaded actor per core). Prints docs/s
of each and the ratio. The job's time includes actor start-up, model loading, Parquet writes
and MLflow logging; Ray itself is already running, as it is on a cluster.

    python bench/encode_throughput.py --data-dir ../shared/datasets [--docs 5183]
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import encode_arguments, scifact_head  # noqa: E402
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # local Ray on 127.0.0.1 (read at import)


def main() -> None:
    ap = encode_arguments(__doc__, docs=5183)
    args = ap.parse_args()
    cores = os.cpu_count() or 1

    import ray
    import torch

    from rayrag.encode.pipeline import EncodeConfig, run_encode
    from rayrag.encode.shards import plan_shards, read_shard
    from rayrag.models.dense import DenseEncoder
    from rayrag.ray_utils import start_local_ray

    tmp = Path(tempfile.mkdtemp(prefix="bench-encode-"))
    os.environ.setdefault("RAYRAG_HOME", str(tmp / "home"))
    corpus = scifact_head(args.data_dir, args.docs, tmp / "corpus.jsonl")
    texts = [t for s in plan_shards(corpus, 10**9).shards for _, t in read_shard(s)]

    torch.set_num_threads(cores)
    enc = DenseEncoder(args.model, max_length=args.max_length)
    enc.encode(texts[:64], batch_size=args.batch_size, progress=False)  # warm-up
    t0 = time.perf_counter()
    enc.encode(texts, batch_size=args.batch_size, progress=False)
    plain = time.perf_counter() - t0
    del enc

    from rayrag import tracking

    tracking.setup()  # create the MLflow store first: a one-off cost, not per job
    start_local_ray(num_cpus=cores)
    t0 = time.perf_counter()
    run_encode(EncodeConfig(model=args.model, corpus=str(corpus), output_dir=str(tmp / "out"),
                            batch_size=args.batch_size, max_length=args.max_length, num_actors=cores,
                            cpus_per_actor=1, docs_per_shard=max(64, args.docs // (4 * cores))))
    job = time.perf_counter() - t0
    ray.shutdown()

    n = len(texts)
    print(f"docs={n} model={args.model} batch={args.batch_size} max_length={args.max_length} cores={cores}")
    print(f"plain loop ({cores} torch threads): {n / plain:8.1f} docs/s  ({plain:.1f}s)")
    print(f"Ray Data job ({cores} actors x 1 thread): {n / job:8.1f} docs/s  ({job:.1f}s, Ray already up)")
    print(f"ratio job/plain: {plain / job:.3f}")


if __name__ == "__main__":
    main()
