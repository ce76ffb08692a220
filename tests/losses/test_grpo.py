"""GRPO advantages and clipped loss against values computed by hand."""
import math

import pytest
import torch

from rayrag.losses import clip_fraction, group_advantages, grpo_loss


def test_group_advantages_normalise_within_groups_and_drop_zero_variance():
    rewards = torch.tensor([[0.0, 1.0], [2.0, 2.0], [1.0, 2.0]])
    adv, keep = group_advantages(rewards)
    # group 0: mean 0.5, population std 0.5 -> -1, +1; group 1: all equal -> dropped, zeros
    assert keep.tolist() == [True, False, True]
    assert adv.tolist() == [[-1.0, 1.0], [0.0, 0.0], [-1.0, 1.0]]
    adv3, _ = group_advantages(torch.tensor([[1.0, 2.0, 6.0]]))
    mean, std = 3.0, math.sqrt(((1 - 3) ** 2 + (2 - 3) ** 2 + (6 - 3) ** 2) / 3)
    assert adv3[0].tolist() == pytest.approx([(1 - mean) / std, (2 - mean) / std, (6 - mean) / std])


def test_grpo_loss_by_hand_with_clipping_and_cot_only_masks():
    # two samples, three token slots; sample 0's last slot is padding, sample 1's first is prompt
    logp = torch.log(torch.tensor([[0.5, 0.6, 0.9], [0.3, 0.2, 0.5]])).requires_grad_()
    old = torch.log(torch.tensor([[0.5, 0.4, 0.1], [0.3, 0.4, 0.5]]))
    mask = torch.tensor([[1, 1, 0], [0, 1, 1]])
    adv = torch.tensor([1.0, -1.0])
    loss = grpo_loss(logp, old, adv, mask, clip_eps=0.2)
    # ratios on kept tokens: s0: 1.0, 1.5; s1: 0.5, 1.0
    # A=+1: min(r, clip(r)) -> 1.0, min(1.5, 1.2) = 1.2
    # A=-1: min(-r, -clip(r)) -> min(-0.5, -0.8) = -0.8, -1.0
    want = -(1.0 + 1.2 - 0.8 - 1.0) / 4
    assert loss.item() == pytest.approx(want, abs=1e-6)
    loss.backward()
    # masked (padding/prompt) tokens get no gradient, nor do clipped ones
    assert logp.grad[0, 2] == 0 and logp.grad[1, 0] == 0
    assert logp.grad[0, 1] == 0 and logp.grad[1, 1] == 0  # ratio outside the clip on the losing side
    assert logp.grad[0, 0].item() == pytest.approx(-1.0 / 4)  # d(-r*A/4)/dlogp = -r*A/4 with r=1
    assert clip_fraction(logp, old, mask) == pytest.approx(2 / 4)


def test_grpo_loss_of_an_empty_mask_is_zero_and_shapes_are_checked():
    logp = torch.zeros(2, 3, requires_grad=True)
    assert grpo_loss(logp, logp.detach(), torch.ones(2), torch.zeros(2, 3)).item() == 0.0
    with pytest.raises(ValueError, match="shapes disagree"):
        grpo_loss(logp, logp.detach(), torch.ones(3), torch.ones(2, 3))
    with pytest.raises(ValueError, match="G>=2"):
        group_advantages(torch.ones(4, 1))
