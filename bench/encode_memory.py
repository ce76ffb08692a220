"""(c) Peak memory of the encode job on a corpus 10x SciFact vs 1x.

Runs the real encode job (Ray Data, actor pool, shards) as a subprocess on SciFact and on a
10x replica (ids made unique), sampling the summed RSS of the job and every process under it
(Ray's workers included). Streaming means the ratio should stay near 1.

    python bench/encode_memory.py --data-dir ../shared/datasets
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PeakRSS, replicate_corpus  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def run(corpus: Path, out: Path, args) -> tuple[float, float]:
    cmd = [sys.executable, "-m", "jobs.encode", "--output-dir", str(out), "--model", args.model,
           f"corpus={corpus}", f"max_length={args.max_length}", f"batch_size={args.batch_size}",
           "docs_per_shard=512", "num_actors=2"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with PeakRSS(proc.pid) as mem:
        rc = proc.wait()
    if rc:
        raise SystemExit(f"encode job failed ({rc}): {' '.join(cmd)}")
    return mem.peak / 2**20, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data-dir", default=os.environ.get("RAYRAG_DATA_DIR", "../shared/datasets"))
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--times", type=int, default=10)
    # short inputs keep the 10x run to minutes on 2 cores; memory is about the pipeline, not sequence length
    ap.add_argument("--max-length", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-mem-"))
    os.environ.setdefault("RAYRAG_HOME", str(tmp / "home"))
    src = Path(args.data_dir) / "scifact" / "corpus.jsonl"
    big = tmp / f"corpus-x{args.times}.jsonl"
    n_big = replicate_corpus(src, big, args.times)
    small_mb, small_s = run(src, tmp / "out-1x", args)
    big_mb, big_s = run(big, tmp / f"out-{args.times}x", args)
    print(f"model={args.model} max_length={args.max_length} batch={args.batch_size}")
    print(f"1x  ({n_big // args.times} docs): peak RSS {small_mb:8.0f} MiB  ({small_s:.0f}s)")
    print(f"{args.times}x ({n_big} docs): peak RSS {big_mb:8.0f} MiB  ({big_s:.0f}s)")
    print(f"ratio {args.times}x/1x: {big_mb / small_mb:.3f}")


if __name__ == "__main__":
    main()
