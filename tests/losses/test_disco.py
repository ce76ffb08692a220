"""The DiSCo loss against numbers worked out by hand: KL, multi-teacher merge, contrastive, padding."""
import math

import pytest
import torch

from rayrag.losses import disco_loss, kl_listwise
from rayrag.losses.disco import teacher_distribution


def _kl(p, q):
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q) if pi > 0)


def _softmax(xs):
    z = sum(math.exp(x) for x in xs)
    return [math.exp(x) / z for x in xs]


def test_one_teacher_kl_is_kl_listwise():
    s = torch.tensor([[2.0, 1.0, 0.0], [0.0, 0.5, 1.0]])
    t = torch.tensor([[0.0, 1.0, 2.0], [1.0, 1.0, -1.0]])
    full = torch.ones(2, 3, dtype=torch.bool)
    got = disco_loss(s, t, full, full, kl_weight=1.0, contrastive_weight=0.0, temperature=2.0)
    assert got.item() == pytest.approx(kl_listwise(s, t, temperature=2.0).item(), rel=1e-6)


def test_weights_kl_and_contrastive_by_hand():
    s = torch.tensor([[1.0, 0.0, -1.0]])
    t = torch.tensor([[0.0, 2.0, 0.0]])
    full = torch.ones(1, 3, dtype=torch.bool)
    pos = torch.tensor([[False, True, True]])
    q, p = _softmax([1.0, 0.0, -1.0]), _softmax([0.0, 2.0, 0.0])
    kl = _kl(p, q)
    ce = -(math.log(q[1]) + math.log(q[2])) / 2  # mean over the two positives
    got = disco_loss(s, t, full, pos)  # defaults 0.99 / 0.01
    assert got.item() == pytest.approx(0.99 * kl + 0.01 * ce, rel=1e-6)


def test_multi_teacher_merges_distributions_not_scores():
    s = torch.tensor([[0.0, 0.0]])
    teachers = torch.tensor([[[3.0, 0.0]], [[0.0, 1.0]]])  # [K=2, Q=1, C=2]
    full = torch.ones(1, 2, dtype=torch.bool)
    a, b = _softmax([3.0, 0.0]), _softmax([0.0, 1.0])
    equal = [(x + y) / 2 for x, y in zip(a, b)]
    weighted = [0.75 * x + 0.25 * y for x, y in zip(a, b)]
    assert teacher_distribution(teachers, full)[0].tolist() == pytest.approx(equal)
    assert teacher_distribution(teachers, full, torch.tensor([3.0, 1.0]))[0].tolist() == pytest.approx(weighted)
    got = disco_loss(s, teachers, full, full, kl_weight=1.0, contrastive_weight=0.0)
    assert got.item() == pytest.approx(_kl(equal, [0.5, 0.5]), rel=1e-6)
    # the mean of the scores would be another target
    assert got.item() != pytest.approx(_kl(_softmax([1.5, 0.5]), [0.5, 0.5]), rel=1e-3)


def test_padded_candidates_count_for_nothing():
    """A turn with 2 candidates padded to 4 gives the loss of the unpadded turn, whatever the pads hold."""
    s2, t2 = torch.tensor([[0.3, -0.2]]), torch.tensor([[1.0, 0.0]])
    pos2 = torch.tensor([[True, False]])
    ref = disco_loss(s2, t2, torch.ones(1, 2, dtype=torch.bool), pos2)
    s4 = torch.tensor([[0.3, -0.2, 50.0, float("nan")]], requires_grad=True)
    t4 = torch.tensor([[1.0, 0.0, 99.0, float("inf")]])
    mask = torch.tensor([[True, True, False, False]])
    pos4 = torch.tensor([[True, False, False, False]])
    got = disco_loss(s4, t4, mask, pos4)
    assert got.item() == pytest.approx(ref.item(), rel=1e-6)
    got.backward()
    assert torch.isfinite(s4.grad).all() and s4.grad[0, 2:].abs().sum() == 0
    # two turns of different lengths in one batch: the mean of the two turns' losses
    s_other, t_other = torch.tensor([[1.0, 2.0, 0.0, -1.0]]), torch.tensor([[0.0, 0.0, 1.0, 2.0]])
    pos_other = torch.tensor([[False, False, False, True]])
    full = torch.ones(1, 4, dtype=torch.bool)
    other = disco_loss(s_other, t_other, full, pos_other)
    both = disco_loss(torch.cat([s4.detach(), s_other]), torch.cat([t4, t_other]), torch.cat([mask, full]),
                      torch.cat([pos4, pos_other]))
    assert both.item() == pytest.approx((ref.item() + other.item()) / 2, rel=1e-6)


def test_rejections():
    s, t = torch.zeros(2, 3), torch.zeros(2, 3)
    full = torch.ones(2, 3, dtype=torch.bool)
    with pytest.raises(ValueError, match="shapes differ"):
        disco_loss(s, t[:, :2], full, full)
    with pytest.raises(ValueError, match="all False"):
        disco_loss(s, t, torch.tensor([[True] * 3, [False] * 3]), torch.tensor([[True] + [False] * 2] * 2))
    with pytest.raises(ValueError, match="positive lies on a padded"):
        disco_loss(s, t, torch.tensor([[True, True, False]] * 2), full)
    with pytest.raises(ValueError, match="at least one positive"):
        disco_loss(s, t, full, torch.zeros(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="non-negative"):
        disco_loss(s, t.expand(2, 2, 3), full, full, teacher_weights=torch.tensor([1.0, -1.0]))


def test_student_scale_multiplies_the_students_scores_only():
    """KL and contrastive both see 0.2 x the student's scores; the teacher's stay as they are."""
    s = torch.tensor([[10.0, 0.0, -5.0]])
    t = torch.tensor([[0.0, 2.0, 0.0]])
    full = torch.ones(1, 3, dtype=torch.bool)
    pos = torch.tensor([[False, True, False]])
    q, p = _softmax([2.0, 0.0, -1.0]), _softmax([0.0, 2.0, 0.0])
    got = disco_loss(s, t, full, pos, student_scale=0.2)
    assert got.item() == pytest.approx(0.99 * _kl(p, q) - 0.01 * math.log(q[1]), rel=1e-6)
    with pytest.raises(ValueError, match="student_scale"):
        disco_loss(s, t, full, pos, student_scale=0.0)
