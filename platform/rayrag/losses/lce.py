"""Localized contrastive estimation (LCE) for cross-encoder rerankers.

Gao, Dai & Callan, "Rethink Training of BERT Rerankers in Multi-Stage Retrieval Pipeline"
(ECIR 2021): each query's group holds its positive and negatives sampled from the
first-stage retriever's top results; the loss is the softmax cross-entropy of the positive
within its group. Localizing negatives to what the reranker will actually see is what makes
it work better than pointwise BCE.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def localized_contrastive(scores: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """scores: [Q, g] reranker scores with each row's positive at column 0 -> scalar loss."""
    if scores.dim() != 2 or scores.shape[1] < 2:
        raise ValueError(f"expected scores [Q, g>=2], got {tuple(scores.shape)}")
    target = torch.zeros(scores.shape[0], dtype=torch.long, device=scores.device)  # [Q]
    return F.cross_entropy(scores / temperature, target)
