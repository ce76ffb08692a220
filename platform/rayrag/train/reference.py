"""The same training without Ray or DeepSpeed: one process, plain PyTorch.

It is the baseline the distributed run is checked against (``tests/test_train.py``: a W-worker
ZeRO run must equal it) and timed against (``bench/train_overhead.py``). Each step takes the
global batch ``batch_size * num_workers`` in the loop's data order, with the loop's objective,
optimizer, schedule and clipping. One batch is one optimizer step: a run with ``grad_accum``
micro-batches equals the reference of a ``grad_accum`` times larger batch only when its loss is
a mean over queries (not so for InfoNCE, whose negatives are the batch's other documents).

``bf16`` is DeepSpeed's, not autocast: the module's parameters and everything it computes are
bf16, and the optimizer updates fp32 master copies, made from the bf16 weights (DeepSpeed casts
the module before copying), that are copied back into the module after each step.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import torch

from .config import TrainConfig


@dataclass
class ReferenceRun:
    losses: list[float]
    step_seconds: list[float]
    module: torch.nn.Module


def plain_pytorch_run(cfg: TrainConfig, steps: int) -> ReferenceRun:
    # As many torch threads as a CPU worker (loop.py): bf16 sums round differently when split
    # over another number of threads (1e-3 apart in the third step's loss, measured).
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, int(cfg.cpus_per_worker)))
    try:
        return _run(cfg, steps)
    finally:
        torch.set_num_threads(threads)


def _run(cfg: TrainConfig, steps: int) -> ReferenceRun:
    from ..assets import resolve_model
    from .engine import make_optimizer
    from .examples import BatchPlan
    from .objectives import make_objective
    from .run import prepare_data

    if cfg.grad_accum != 1:
        raise ValueError("the reference takes one batch per optimizer step: give it batch_size * grad_accum "
                         "and grad_accum=1")
    data = prepare_data(cfg)
    exs, text = data["examples"], data["text"]
    torch.manual_seed(cfg.seed)  # the loop seeds the same way before building the module
    objective = make_objective(cfg)
    module = objective.build(resolve_model(cfg.model).path)
    module.train()
    master = module
    if cfg.bf16:
        for p in module.parameters():  # parameters only: DeepSpeed leaves buffers as they are
            p.data = p.data.to(torch.bfloat16)
        master = copy.deepcopy(module).float()
    optimizer, scheduler = make_optimizer(master, cfg, steps)
    pairs = [(p, m) for p, m in zip(module.parameters(), master.parameters()) if p.requires_grad]
    trainable = [m for _, m in pairs]
    plan = BatchPlan(len(exs), cfg.batch_size * cfg.num_workers, 1, 1)
    order = plan.order(cfg.seed, 0)
    run = ReferenceRun([], [], module)
    for micro in range(steps):
        t0 = time.perf_counter()
        groups = [objective.group(exs[i], int(i), 0, text) for i in plan.indices(order, micro, 0)]
        objective.step = micro
        loss = objective.loss(module, objective.collate(groups))
        loss.backward()
        if master is not module:
            for p, m in pairs:
                m.grad, p.grad = None if p.grad is None else p.grad.float(), None
        if cfg.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(trainable, cfg.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        if master is not module:
            with torch.no_grad():
                for p, m in pairs:
                    p.copy_(m)
        run.losses.append(loss.item())
        run.step_seconds.append(time.perf_counter() - t0)
    return run
