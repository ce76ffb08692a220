"""InfoNCE (contrastive) loss with in-batch and hard negatives.

van den Oord, Li & Vinyals, "Representation Learning with Contrastive Predictive Coding"
(2018); as used for dense retrieval by Karpukhin et al., "Dense Passage Retrieval" (EMNLP
2020), with a temperature as in SimCSE / E5.

Distributed semantics (``gather=True`` under torch.distributed): every worker's documents
become negatives for every worker's queries. Documents are all-gathered *with* gradients
(``torch.distributed.nn.all_gather``), the local queries are scored against the global
document matrix, and the positive of local query i sits at column ``rank * D_local + i*g``.
The per-worker loss is the mean over local queries; since DDP/DeepSpeed average gradients
over workers, the effective gradient equals that of the single-process loss over the global
batch (tests/losses/test_infonce.py checks loss and gradients against that reference).
The gather itself lives in ``rayrag.distributed``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..distributed import gather_with_grad, rank


def infonce(q: torch.Tensor, d: torch.Tensor, temperature: float = 0.05, group_size: int | None = None,
            gather: bool = False, per_query: int = 1) -> torch.Tensor:
    """Contrastive loss of queries against documents.

    Args:
        q: [Q, H] query embeddings (normalise them first for cosine similarity).
        d: [Q * g, H] document embeddings laid out per query: query i's group is rows
           ``i*g : (i+1)*g`` with its positive first, then its hard negatives. ``g = 1`` is
           plain in-batch negatives.
        temperature: scores are divided by it.
        group_size: g; inferred as ``len(d) // len(q)`` when None.
        gather: use every worker's documents as negatives (see module docstring).
        per_query: rows of ``q`` per query, consecutive (several embeddings of one query, e.g.
            LREM's sampled thoughts): row r belongs to query ``r // per_query``. The loss is the
            mean over all rows, i.e. the mean of the per-sample losses, with one gather.
    Returns:
        scalar mean cross-entropy over the local queries.
    """
    if per_query < 1 or q.shape[0] % per_query:
        raise ValueError(f"{q.shape[0]} query rows are not a multiple of per_query={per_query}")
    n_q = q.shape[0] // per_query
    g = group_size or d.shape[0] // n_q
    if d.shape[0] != n_q * g:
        raise ValueError(f"expected {n_q} x {g} documents, got {d.shape[0]}")
    offset = 0
    if gather:
        offset = rank() * d.shape[0]  # this worker's documents start here in the gathered matrix
        d = gather_with_grad(d)  # [W * Q * g, H]
    scores = q @ d.T / temperature  # [Q, W * Q * g]
    target = offset + torch.arange(q.shape[0], device=q.device) // per_query * g  # [Q * per_query]
    return F.cross_entropy(scores, target)
