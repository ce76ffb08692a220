"""L1 regulariser for sparse representations: ``mean_i sum_j |w_ij|``.

The plain sparsity penalty of sparse retrieval (e.g. SNRM: Zamani et al., "From Neural
Re-Ranking to Neural Ranking: Learning a Sparse Representation for Inverted Indexing", CIKM
2018); Lassance & Clinchant ("An Efficiency Study for SPLADE Models", SIGIR 2022) use it on
SPLADE's queries, where it pushes query terms down more uniformly than FLOPS.

Distributed semantics: it is a mean over rows, hence additive. Each worker takes the mean over
its own rows; with equal per-worker batches (the training loop's batches are), the engine's
gradient averaging gives the single-process gradient of the global batch. No collective.
"""
from __future__ import annotations

import torch


def l1(reps: torch.Tensor) -> torch.Tensor:
    """reps: [B, V] term weights -> scalar mean over rows of the row's L1 norm."""
    if reps.dim() != 2 or reps.shape[0] == 0:
        raise ValueError(f"expected reps [B>0, V], got {tuple(reps.shape)}")
    return reps.float().abs().sum(1).mean()  # [B] -> scalar
