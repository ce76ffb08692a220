"""torch.distributed helpers that work the same with and without a process group.

Losses and training code call these instead of ``torch.distributed`` directly, so a loss stays
a pure function in a single process (tests, notebooks) and becomes its cross-worker version
under Ray Train without a second code path. Only torch: no Ray, nothing else from rayrag.
"""
from __future__ import annotations

import torch


def _active() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This worker's rank; 0 without a process group."""
    import torch.distributed as dist

    return dist.get_rank() if _active() else 0


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """All-gather along dim 0 keeping the autograd graph (identity without torch.distributed).

    ``torch.distributed.nn.functional.all_gather`` (unlike ``dist.all_gather``) is
    differentiable: the gradient of each gathered block flows back to the worker that produced
    it. Every worker's rows land in rank order, so worker r's rows start at ``r * len(x)``.
    """
    import torch.distributed as dist

    if not _active() or dist.get_world_size() == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x), dim=0)  # [W * N, ...]


def all_reduce_sum_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Sum of ``x`` over workers, keeping the autograd graph (identity without torch.distributed).

    Built on ``gather_with_grad`` (``torch.distributed.nn.functional.all_reduce`` is deprecated):
    the all-gather's backward sums, over workers, the gradients of each worker's block, so each
    worker's ``x`` receives the gradient of the *sum of every worker's loss*. Engines then average
    gradients over workers, which turns that into the gradient of the mean of the workers' losses.
    """
    return gather_with_grad(x.unsqueeze(0)).sum(0)  # [W, ...] -> [...]


def world_size() -> int:
    """Number of workers; 1 without a process group."""
    import torch.distributed as dist

    return dist.get_world_size() if _active() else 1
