"""InfoNCE as a pure function, and across two workers against the single-process reference."""
import pytest
import torch
import torch.multiprocessing as mp

from rayrag.losses import infonce
from tests.conftest import free_port


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


def _worker(rank, world, port, out):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    q_all, d_all, w = _global_batch()
    w = w.clone().requires_grad_(True)  # a shared "encoder" weight
    nq = q_all.shape[0] // world
    q = torch.nn.functional.normalize(q_all[rank * nq:(rank + 1) * nq] @ w, dim=-1)
    d = torch.nn.functional.normalize(d_all[rank * 2 * nq:(rank + 1) * 2 * nq] @ w, dim=-1)
    loss = infonce(q, d, temperature=0.05, gather=True)
    loss.backward()
    dist.all_reduce(w.grad)  # what DDP / DeepSpeed do: average gradients across workers
    w.grad /= world
    avg = loss.detach().clone()
    dist.all_reduce(avg)
    out[rank] = (avg.item() / world, w.grad.clone())
    dist.destroy_process_group()


def test_two_worker_infonce_equals_single_process_loss_and_gradients():
    q_all, d_all, w = _global_batch()
    w = w.clone().requires_grad_(True)
    ref = infonce(torch.nn.functional.normalize(q_all @ w, dim=-1),
                  torch.nn.functional.normalize(d_all @ w, dim=-1), temperature=0.05)
    ref.backward()
    with mp.Manager() as m:
        out = m.dict()
        mp.start_processes(_worker, args=(2, free_port(), out), nprocs=2, join=True, start_method="spawn")
        results = dict(out)
    for rank in (0, 1):
        loss, grad = results[rank]
        assert loss == pytest.approx(ref.item(), rel=1e-5)
        assert torch.allclose(grad, w.grad, atol=1e-6), (grad - w.grad).abs().max()
