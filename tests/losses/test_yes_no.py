"""Yes/no SFT for LLM rerankers as a pure function."""
import pytest
import torch

from rayrag.losses import yes_no_sft


def test_yes_no_sft_targets_the_answer_token():
    logits = torch.zeros(2, 10)
    logits[0, 3] = 5.0  # row 0 says "yes" (id 3); row 1 says nothing
    loss_right = yes_no_sft(logits, torch.tensor([True, False]), yes_id=3, no_id=4)
    loss_wrong = yes_no_sft(logits, torch.tensor([False, False]), yes_id=3, no_id=4)
    assert loss_right < loss_wrong
    expected = (-torch.log_softmax(logits[0], -1)[3] - torch.log_softmax(logits[1], -1)[4]) / 2
    assert loss_right.item() == pytest.approx(expected.item())
