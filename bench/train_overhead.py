"""Time per training sample: Ray Train + DeepSpeed (1 worker) vs a plain PyTorch loop.

Same model, objective, batch, optimizer and data order in both; the plain loop runs in this
process with the same number of torch threads as the Ray worker. Start-up (Ray, worker
group, DeepSpeed init) is excluded from both: per-step wall times come from the training loop
itself (``loss_history.json``) and the first ``--warmup`` steps are dropped.

    python bench/train_overhead.py [--model minilm] [--steps 12] [--batch-size 16]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--examples", default="out/mine/scifact-train-bm25.jsonl")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--group-size", type=int, default=2)
    ap.add_argument("--doc-max-length", type=int, default=128)
    ap.add_argument("--zero-stage", type=int, default=0)
    ap.add_argument("--cpus", type=int, default=2)
    args = ap.parse_args()

    from rayrag.config import load_config
    from rayrag.train import TrainConfig, run_train

    out = Path(tempfile.mkdtemp(prefix="rayrag-bench-train-"))
    cfg = load_config(TrainConfig, None, [
        f"model={args.model}", f"examples={args.examples}", f"output_dir={out}", f"max_steps={args.steps}",
        f"batch_size={args.batch_size}", f"group_size={args.group_size}", f"doc_max_length={args.doc_max_length}",
        f"zero_stage={args.zero_stage}", f"cpus_per_worker={args.cpus}", "num_workers=1", "eval.split=null",
        f"log_every={args.steps}"])
    samples = cfg.batch_size  # queries per optimizer step (each with group_size documents)
    import torch

    from rayrag.train.reference import plain_pytorch_run

    torch.set_num_threads(args.cpus)  # as many threads as the Ray worker gets
    plain = plain_pytorch_run(cfg, args.steps).step_seconds[args.warmup:]
    run_train(cfg)
    ray_steps = json.loads((out / "loss_history.json").read_text())["step_seconds"][args.warmup:]
    p, r = statistics.mean(plain) / samples, statistics.mean(ray_steps) / samples
    print(json.dumps({"model": args.model, "batch_size": args.batch_size, "group_size": args.group_size,
                      "doc_max_length": args.doc_max_length, "zero_stage": args.zero_stage,
                      "timed_steps": len(plain), "plain_s_per_sample": round(p, 4),
                      "ray_deepspeed_s_per_sample": round(r, 4), "ratio": round(r / p, 3)}, indent=2))
    print(f"Ray Train + DeepSpeed / plain PyTorch time per sample: {r / p:.3f}x (target <= 1.15)")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "platform"))
    sys.exit(main())
