"""FLOPS regulariser for sparse representations.

Paria, Yeh, Yen, Xu, Ravikumar & Póczos, "Minimizing FLOPs to Learn Efficient Sparse
Representations" (ICLR 2020): ``sum_j (mean_i w_ij)^2`` over a batch of non-negative term
weights, a smooth proxy for the expected number of floating-point operations of an inverted
index lookup; SPLADE (Formal et al., SIGIR 2021) regularises its representations with it.

Distributed semantics (``gather=True`` under torch.distributed). The square of a mean is not
additive over workers, so the mean must be the global one: each worker all-reduces its column
sums *with gradients* (``rayrag.distributed.all_reduce_sum_with_grad``) and divides by the
global row count N (all-reduced too). Every worker then holds the same value, the single-process
FLOPS of the global batch. Scaling of the gradient: the all-reduce's backward sums the workers'
gradients, so worker r's rows receive ``W * 2 a_j / N`` (a = global column means, W workers);
DeepSpeed/DDP then average gradients over the W workers, which leaves ``2 a_j / N``, exactly the
single-process gradient. No extra factor is needed (tests/losses/test_disco_distributed.py).
Without ``gather`` each worker regularises its own batch mean: a different (larger) penalty.
"""
from __future__ import annotations

import torch

from ..distributed import all_reduce_sum_with_grad


def flops(reps: torch.Tensor, gather: bool = False) -> torch.Tensor:
    """reps: [B, V] non-negative term weights -> scalar ``sum_j (mean_i reps_ij)^2``.

    With ``gather`` the mean runs over every worker's rows (see the module docstring).
    """
    if reps.dim() != 2:
        raise ValueError(f"expected reps [B, V], got {tuple(reps.shape)}")
    col_sum = reps.float().sum(0)  # [V]
    count = torch.tensor(float(reps.shape[0]), device=reps.device)
    if gather:
        col_sum = all_reduce_sum_with_grad(col_sum)  # [V], summed over workers
        count = all_reduce_sum_with_grad(count)  # no grad flows: a constant
    if count.item() == 0:
        raise ValueError("FLOPS of an empty batch")
    return ((col_sum / count) ** 2).sum()
