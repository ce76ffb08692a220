"""The CoT-only next-token loss against a hand-built reference."""
import pytest
import torch
import torch.nn.functional as F

from rayrag.losses import cot_sft


def test_cot_sft_counts_only_the_marked_tokens_predicted_from_the_previous_position():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7)
    ids = torch.randint(0, 7, (2, 5))
    mask = torch.tensor([[0, 0, 1, 1, 0], [0, 1, 0, 0, 0]])
    want = torch.stack([F.cross_entropy(logits[0, 1], ids[0, 2]), F.cross_entropy(logits[0, 2], ids[0, 3]),
                        F.cross_entropy(logits[1, 0], ids[1, 1])]).mean()
    assert cot_sft(logits, ids, mask).item() == pytest.approx(want.item(), abs=1e-6)


def test_cot_sft_rejects_empty_and_impossible_targets():
    logits, ids = torch.zeros(1, 3, 4), torch.zeros(1, 3, dtype=torch.long)
    with pytest.raises(ValueError, match="no CoT token"):
        cot_sft(logits, ids, torch.zeros(1, 3))
    with pytest.raises(ValueError, match="first token"):
        cot_sft(logits, ids, torch.tensor([[1, 0, 0]]))
