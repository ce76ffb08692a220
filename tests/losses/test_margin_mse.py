"""MarginMSE distillation as a pure function."""
import torch

from rayrag.losses import margin_mse


def test_margin_mse_is_squared_margin_difference():
    assert margin_mse(torch.tensor([3.0]), torch.tensor([1.0]), torch.tensor([2.0]), torch.tensor([1.0])).item() == 1.0
