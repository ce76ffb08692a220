"""KL listwise distillation as a pure function."""
import pytest
import torch

from rayrag.losses import kl_listwise


def test_kl_listwise_is_kl_of_teacher_to_student_softmax():
    s = torch.tensor([[2.0, 1.0, 0.0]])
    assert kl_listwise(s, s).item() == pytest.approx(0.0, abs=1e-7)
    t = torch.tensor([[0.0, 1.0, 2.0]])
    p, qs = torch.softmax(t, -1), torch.softmax(s, -1)
    assert kl_listwise(s, t).item() == pytest.approx(float((p * (p / qs).log()).sum()), rel=1e-5)
