"""The one DeepSpeed engine setup every training objective shares.

DeepSpeed runs on the process group Ray Train already created (gloo on CPU, nccl on GPU).
The optimizer is a client ``torch.optim.AdamW``: DeepSpeed's fused Adam JIT-compiles C++ on
first use (over a minute, and CI has no compiler cache), and ZeRO 0-3 accept client
optimizers. The learning-rate schedule is a client ``LambdaLR`` that DeepSpeed steps once per
optimizer step (not per micro-batch).
"""
from __future__ import annotations

import contextlib
import math

import torch

from .config import TrainConfig


def lr_lambda(schedule: str, warmup: int, total: int):
    """Multiplier of the peak lr at optimizer step ``s``: linear warmup, then the decay."""
    def f(s: int) -> float:
        if warmup and s < warmup:
            return (s + 1) / warmup
        if schedule == "constant":
            return 1.0
        progress = min(1.0, (s - warmup) / max(1, total - warmup))
        if schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return max(0.0, 1.0 - progress)
    return f


def deepspeed_config(cfg: TrainConfig, world: int) -> dict:
    return {
        "train_micro_batch_size_per_gpu": cfg.batch_size,
        "gradient_accumulation_steps": cfg.grad_accum,
        "train_batch_size": cfg.batch_size * cfg.grad_accum * world,
        "gradient_clipping": cfg.max_grad_norm or 0.0,
        "zero_optimization": {"stage": cfg.zero_stage},
        "bf16": {"enabled": cfg.bf16},
        "zero_allow_untested_optimizer": True,  # the client AdamW (see module docstring)
        "steps_per_print": 10 ** 9,  # we log to MLflow ourselves
        "wall_clock_breakdown": False,
    }


def make_optimizer(module: torch.nn.Module, cfg: TrainConfig, total_steps: int):
    """-> (AdamW, LambdaLR). Frozen parameters stay out; no weight decay on biases and norms."""
    params = [p for p in module.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    # Empty groups are left out (LoRA has no 1-D parameters): DeepSpeed drops them, and the
    # schedule would then have more lambdas than the optimizer has groups.
    groups = [g for g in ({"params": decay, "weight_decay": cfg.weight_decay},
                          {"params": no_decay, "weight_decay": 0.0}) if g["params"]]
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr)
    warmup = int(cfg.warmup_ratio * total_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg.schedule, warmup, total_steps))
    return optimizer, scheduler


def make_engine(module: torch.nn.Module, cfg: TrainConfig, world: int, total_steps: int):
    """-> (engine, scheduler) around ``make_optimizer``'s optimizer and schedule."""
    import deepspeed

    _skip_shm_comm_op()
    optimizer, scheduler = make_optimizer(module, cfg, total_steps)
    engine, _, _, scheduler = deepspeed.initialize(model=module, optimizer=optimizer, lr_scheduler=scheduler,
                                                   config=deepspeed_config(cfg, world))
    _undo_zero_gradient_step(engine)
    return engine, scheduler


def _undo_zero_gradient_step(engine) -> None:
    """Start bf16 without ZeRO from the optimizer's initial state, as every other setting does.

    DeepSpeed's bf16 path without ZeRO wraps a client optimizer in ``FP16_UnfusedOptimizer``,
    which creates the optimizer state by stepping it once on zero gradients. For AdamW that
    step counts (bias correction one step late: the first real update is 0.74 x lr, not lr)
    and decays the fp32 master weights once at the warmup lr. Measured: the third step's loss
    3e-2 off the bf16 reference, which ZeRO-2 matches exactly (tests/test_train_engine.py).
    Undone: the state is dropped, so AdamW creates it at the first real step, and the masters
    are copied again from the bf16 weights they were made from.
    """
    from deepspeed.runtime.fp16.unfused_optimizer import FP16_UnfusedOptimizer

    opt = engine.optimizer
    if not isinstance(opt, FP16_UnfusedOptimizer):
        return
    opt.optimizer.state.clear()
    with torch.no_grad():
        for masters, params in zip(opt.fp32_groups, opt.fp16_groups):
            for master, param in zip(masters, params):
                master.copy_(param)


def _skip_shm_comm_op() -> None:
    """Keep DeepSpeed from JIT-compiling its shared-memory all-reduce op at every CPU init.

    The op serves only DeepSpeed's inference all-reduce, never training. Its build runs under a
    file lock in ~/.cache/torch_extensions; a worker killed while holding it (a fault test, Ray
    replacing a worker, Ctrl-C) leaves the lock behind, and every later init on that machine
    waits on it forever: that hung the suite in CI. Marked incompatible, the op is never built
    (DeepSpeed keeps this dict for the process, so the mark holds).
    """
    import deepspeed.ops

    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False


@contextlib.contextmanager
def full_parameters(engine, zero_stage: int):
    """Every rank sees whole parameters inside (ZeRO-3 shards them); call on all ranks."""
    if zero_stage != 3:
        yield
        return
    import deepspeed

    with deepspeed.zero.GatheredParameters(list(engine.module.parameters()), modifier_rank=None):
        yield
