"""LREM stage 1 (CoT SFT + InfoNCE) on two workers equals one process over the global batch."""
import torch
import torch.nn.functional as F

from rayrag.losses import lrem_stage1
from tests.losses.two_workers import assert_two_workers_match

Q, T, H, V, G = 4, 6, 16, 11, 2


def _global_batch():
    g = torch.Generator().manual_seed(3)
    hidden = torch.randn(Q, T, H, generator=g)
    ids = torch.randint(0, V, (Q, T), generator=g)
    # uneven CoT lengths, and worker 1's first query has none: a per-worker token mean would differ
    target = torch.tensor([[0, 0, 1, 1, 1, 1], [0, 0, 0, 0, 1, 0], [0, 0, 0, 0, 0, 0], [0, 1, 1, 0, 0, 0]])
    docs = torch.randn(Q * G, H, generator=g)
    proj = torch.randn(H, V, generator=g)
    return hidden, ids, target, docs, proj, torch.randn(H, H, generator=g)


def _loss(w, rows, gather):
    hidden, ids, target, docs, proj, _ = _global_batch()
    h = hidden[rows] @ w
    q = F.normalize(h[:, -1], dim=-1)
    d = F.normalize(docs[rows.start * G:rows.stop * G] @ w, dim=-1)
    return lrem_stage1(h @ proj, ids[rows], target[rows], q, d, sft_weight=0.1, infonce_weight=1.0,
                       temperature=0.05, group_size=G, gather=gather)


def _local_loss(rank, world, w):
    n = Q // world
    return _loss(w, slice(rank * n, (rank + 1) * n), gather=True)


def test_two_worker_stage1_equals_single_process_loss_and_gradients():
    assert_two_workers_match(_local_loss, _global_batch()[-1], lambda w: _loss(w, slice(0, Q), gather=False))
