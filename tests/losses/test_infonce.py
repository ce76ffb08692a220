"""InfoNCE as a pure function, and across two workers against the single-process reference."""
import pytest
import torch

from rayrag.losses import infonce
from tests.losses.two_workers import run_two_workers


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
    w = w.clone().requires_grad_(True)
    ref = infonce(torch.nn.functional.normalize(q_all @ w, dim=-1),
                  torch.nn.functional.normalize(d_all @ w, dim=-1), temperature=0.05)
    ref.backward()
    results = run_two_workers(_local_loss, w.detach())
    for rank in (0, 1):
        loss, grad = results[rank]
        assert loss == pytest.approx(ref.item(), rel=1e-5)
        assert torch.allclose(grad, w.grad, atol=1e-6), (grad - w.grad).abs().max()
