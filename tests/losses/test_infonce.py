"""InfoNCE as a pure function, and across two workers against the single-process reference."""
import pytest
import torch

from rayrag.losses import infonce
from tests.losses.two_workers import assert_two_workers_match


def test_infonce_matches_the_formula():
    torch.manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(3, 8), dim=-1)
    d = torch.nn.functional.normalize(torch.randn(6, 8), dim=-1)  # 2 per query: positive, hard negative
    loss = infonce(q, d, temperature=0.1)
    s = q @ d.T / 0.1
    ref = -sum(s[i, 2 * i] - torch.logsumexp(s[i], 0) for i in range(3)) / 3
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)
    with pytest.raises(ValueError, match="expected 3 x 2 documents"):
        infonce(q, d[:5], group_size=2)


def _global_batch():
    g = torch.Generator().manual_seed(1)
    return torch.randn(4, 16, generator=g), torch.randn(8, 16, generator=g), torch.randn(16, 16, generator=g)


def _local_loss(rank, world, w):
    q_all, d_all, _ = _global_batch()
    nq = q_all.shape[0] // world
    q = torch.nn.functional.normalize(q_all[rank * nq:(rank + 1) * nq] @ w, dim=-1)
    d = torch.nn.functional.normalize(d_all[rank * 2 * nq:(rank + 1) * 2 * nq] @ w, dim=-1)
    return infonce(q, d, temperature=0.05, gather=True)


def test_two_worker_infonce_equals_single_process_loss_and_gradients():
    q_all, d_all, w = _global_batch()
    assert_two_workers_match(_local_loss, w, lambda w: infonce(torch.nn.functional.normalize(q_all @ w, dim=-1),
                                                               torch.nn.functional.normalize(d_all @ w, dim=-1),
                                                               temperature=0.05))


def test_several_rows_per_query_equal_the_mean_of_per_sample_losses():
    torch.manual_seed(1)
    q = torch.nn.functional.normalize(torch.randn(3 * 4, 8), dim=-1)  # 3 queries x 4 samples, consecutive
    d = torch.nn.functional.normalize(torch.randn(3 * 2, 8), dim=-1)
    per_sample = torch.stack([infonce(q.view(3, 4, 8)[:, j], d, 0.1) for j in range(4)]).mean()
    assert infonce(q, d, 0.1, per_query=4).item() == pytest.approx(per_sample.item(), rel=1e-6)
    with pytest.raises(ValueError, match="not a multiple of per_query=5"):
        infonce(q, d, per_query=5)
