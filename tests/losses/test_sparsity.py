"""FLOPS and L1 regularisers against numbers worked out by hand."""
import pytest
import torch

from rayrag.losses import flops, l1


def test_flops_is_the_sum_of_squared_column_means():
    w = torch.tensor([[1.0, 0.0, 2.0],
                      [3.0, 0.0, 0.0]])
    # column means 2, 0, 1 -> 4 + 0 + 1
    assert flops(w).item() == pytest.approx(5.0)
    # one row: the mean is the row itself
    assert flops(w[:1]).item() == pytest.approx(1.0 + 4.0)


def test_flops_gradient_is_two_mean_over_rows():
    w = torch.tensor([[1.0, 0.0, 2.0], [3.0, 0.0, 0.0]], requires_grad=True)
    flops(w).backward()
    assert torch.equal(w.grad, torch.tensor([[2.0, 0.0, 1.0], [2.0, 0.0, 1.0]]))  # 2 * mean_j / B


def test_l1_is_the_mean_row_norm():
    w = torch.tensor([[1.0, 0.0, 2.0], [3.0, 0.0, 0.0]])
    assert l1(w).item() == pytest.approx((3.0 + 3.0) / 2)
    assert l1(torch.tensor([[-1.0, 0.5]])).item() == pytest.approx(1.5)


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match=r"expected reps \[B, V\]"):
        flops(torch.ones(3))
    with pytest.raises(ValueError, match="empty batch"):
        flops(torch.ones(0, 4))
    with pytest.raises(ValueError, match=r"expected reps \[B>0, V\]"):
        l1(torch.ones(0, 4))
