"""LREM's reward parts, including malformed and over-long chains of thought."""
import math

import pytest
import torch

from rayrag.losses import lrem_reward, rank_reward


def test_rank_reward_is_one_at_the_top_and_zero_at_the_bottom():
    r = rank_reward(torch.tensor([1, 10, 100]), 100)
    assert r.tolist() == pytest.approx([1.0, 1 - math.log(10) / math.log(100), 0.0])
    with pytest.raises(ValueError, match=r"ranks must lie in \[1, 100\]"):
        rank_reward(torch.tensor([0]), 100)
    with pytest.raises(ValueError, match="at least 2 candidates"):
        rank_reward(torch.tensor([1]), 1)


def test_lrem_reward_weights_each_part_as_the_paper():
    total, parts = lrem_reward(format_ok=torch.tensor([True, False, True]), cot_len=torch.tensor([5, 40, 17]),
                               rank=torch.tensor([1, 1, 10]), n=10)
    # well-formed, short, rank 1 -> 0.5 + 0.2 + 1; malformed and too long -> only r_acc;
    # well-formed, one token over the limit, last of 10 -> 0.5
    assert total.tolist() == pytest.approx([1.7, 1.0, 0.5])
    assert parts["format"].tolist() == [1.0, 0.0, 1.0] and parts["length"].tolist() == [1.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="reward weights"):
        lrem_reward(torch.tensor([True]), torch.tensor([1]), torch.tensor([1]), 2, weights={"fmt": 1.0})
