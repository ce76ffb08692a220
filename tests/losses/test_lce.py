"""Localized contrastive estimation (LCE) as a pure function."""
import pytest
import torch

from rayrag.losses import localized_contrastive


def test_lce_is_group_softmax_cross_entropy():
    scores = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0]])
    expected = -(torch.log_softmax(scores, -1)[:, 0]).mean()
    assert localized_contrastive(scores).item() == pytest.approx(expected.item())
    with pytest.raises(ValueError, match="g>=2"):
        localized_contrastive(torch.zeros(3, 1))
