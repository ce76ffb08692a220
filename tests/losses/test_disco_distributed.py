"""DiSCo loss + FLOPS on two gloo workers equals the single-process loss and gradients."""
import pytest
import torch

from rayrag.losses import disco_loss, flops
from tests.losses.two_workers import assert_two_workers_match

Q, C, H, V = 4, 5, 6, 12


def _batch():
    g = torch.Generator().manual_seed(3)
    q_in, d_in = torch.randn(Q, H, generator=g), torch.randn(Q, C, H, generator=g)
    w = torch.randn(H, V, generator=g)  # a shared "encoder" weight
    teacher = torch.randn(2, Q, C, generator=g)
    mask = torch.ones(Q, C, dtype=torch.bool)
    mask[1, 3:] = False
    mask[2, 4] = False  # turns with 5, 3, 4 and 5 candidates
    pos = torch.zeros(Q, C, dtype=torch.bool)
    pos[:, 0] = True
    pos[3, 2] = True
    return q_in, d_in, w, teacher, mask, pos


def _loss(q_in, d_in, w, teacher, mask, pos, gather):
    q = torch.log1p(torch.relu(q_in @ w))  # [q, V] non-negative, like SPLADE
    d = torch.log1p(torch.relu(d_in @ w)).detach()  # [q, C, V]: the frozen document side
    scores = torch.einsum("qv,qcv->qc", q, d)
    return (disco_loss(scores, teacher, mask, pos, torch.tensor([0.7, 0.3]), temperature=2.0)
            + 0.1 * flops(q, gather=gather))


def _local_loss(rank, world, w):
    q_in, d_in, _, teacher, mask, pos = _batch()
    rows = slice(rank * (Q // world), (rank + 1) * (Q // world))
    return _loss(q_in[rows], d_in[rows], w, teacher[:, rows], mask[rows], pos[rows], gather=True)


def test_two_workers_equal_one_process():
    q_in, d_in, w, teacher, mask, pos = _batch()
    assert_two_workers_match(_local_loss, w, lambda w: _loss(q_in, d_in, w, teacher, mask, pos, gather=False))


def test_flops_without_gather_is_per_worker():
    """The reason for gather=True: the mean of the halves' FLOPS is not the whole batch's."""
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert flops(q).item() == pytest.approx(0.5)
    assert (flops(q[:1]) + flops(q[1:])).item() / 2 == pytest.approx(1.0)
