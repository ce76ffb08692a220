"""The same training without Ray or DeepSpeed: one process, plain PyTorch.

It is the baseline the distributed run is checked against (``tests/test_train.py``: a W-worker
ZeRO run must equal it) and timed against (``bench/train_overhead.py``). Each step takes the
global batch ``batch_size * num_workers`` in the loop's data order, with the loop's objective,
optimizer, schedule and clipping.
"""
from __future__ import annotations

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
    from ..assets import resolve_model
    from .engine import make_optimizer
    from .examples import BatchPlan
    from .objectives import make_objective
    from .run import prepare_data

    data = prepare_data(cfg)
    exs, text = data["examples"], data["text"]
    torch.manual_seed(cfg.seed)  # the loop seeds the same way before building the module
    objective = make_objective(cfg)
    module = objective.build(resolve_model(cfg.model).path)
    module.train()
    optimizer, scheduler = make_optimizer(module, cfg, steps)
    trainable = [p for p in module.parameters() if p.requires_grad]
    plan = BatchPlan(len(exs), cfg.batch_size * cfg.num_workers, 1, 1)
    order = plan.order(cfg.seed, 0)
    run = ReferenceRun([], [], module)
    for micro in range(steps):
        t0 = time.perf_counter()
        groups = [objective.group(exs[i], int(i), 0, text) for i in plan.indices(order, micro, 0)]
        objective.step = micro
        loss = objective.loss(module, objective.collate(groups))
        loss.backward()
        if cfg.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(trainable, cfg.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        run.losses.append(loss.item())
        run.step_seconds.append(time.perf_counter() - t0)
    return run
