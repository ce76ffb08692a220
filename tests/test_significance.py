import numpy as np
import pytest

from rayrag.eval.significance import paired_randomization_test, paired_test_by_conversation


def test_exact_enumeration_by_hand():
    # Conversations x, y, z with summed differences 1, 2, 3 (x and z have two turns each).
    # Sign patterns give |+-1 +-2 +-3| in {6, 4, 2, 0, 0, 2, 4, 6}: 2 of 8 reach 6.
    a = [0.5, 0.5, 2.0, 1.0, 2.0]
    b = [0.0, 0.0, 0.0, 0.0, 0.0]
    groups = ["x", "x", "y", "z", "z"]
    assert paired_randomization_test(a, b, groups) == pytest.approx(2 / 8)
    # Turn by turn (5 independent units: diffs .5 .5 2 1 2, sum 6) the test is another one:
    # 2 of 32 patterns reach 6, so ignoring conversations gives a smaller p.
    assert paired_randomization_test(a, b, list("abcde")) == pytest.approx(2 / 32)
    # Smaller observed difference: x flips alone in the data -> |-1+2+3| = 4; 4 of 8 reach >= 4.
    assert paired_randomization_test([-0.5, -0.5, 2, 1, 2], b, groups) == pytest.approx(4 / 8)


def test_turns_of_a_conversation_flip_together():
    # One conversation, however many turns: only two sign patterns, so p is 1.
    assert paired_randomization_test([1.0] * 50, [0.0] * 50, ["c"] * 50) == 1.0


def test_clear_difference_and_none():
    rng = np.random.default_rng(1)
    groups = [f"c{i // 7}" for i in range(700)]  # 100 conversations: sampled, not enumerated
    base = rng.uniform(0, 1, 700)
    better = np.clip(base + 0.1 + rng.normal(0, 0.05, 700), 0, 1)
    p_clear = paired_randomization_test(better, base, groups, n_permutations=2000, seed=0)
    assert p_clear == pytest.approx(1 / 2001)  # no sampled pattern reaches it
    same = base + rng.normal(0, 0.05, 700)
    assert paired_randomization_test(same, base, groups, n_permutations=2000) > 0.05
    assert paired_randomization_test(base, base, groups, n_permutations=2000) == 1.0
    # fixed seed: the same p every time; symmetric in A and B
    p = paired_randomization_test(same, base, groups, n_permutations=2000, seed=3)
    assert p == paired_randomization_test(same, base, groups, n_permutations=2000, seed=3)
    assert p == paired_randomization_test(base, same, groups, n_permutations=2000, seed=3)


def test_by_query_id():
    a = {"x<::>1": 1.0, "x<::>2": 0.0, "y<::>1": 1.0}
    b = {"x<::>1": 0.0, "x<::>2": 0.0, "y<::>1": 0.0}
    conv = {q: q.split("<::>")[0] for q in a}
    assert paired_test_by_conversation(a, b, conv) == pytest.approx(2 / 4)
    with pytest.raises(ValueError, match="different turns"):
        paired_test_by_conversation(a, {"x<::>1": 0.0}, conv)
    with pytest.raises(ValueError, match="no conversation id for 1 turns"):
        paired_test_by_conversation(a, b, {"x<::>1": "x", "x<::>2": "x"})


@pytest.mark.parametrize("a, b, groups, message", [
    ([], [], [], "non-empty"),
    ([1.0], [1.0, 2.0], ["c"], "equally long"),
    ([float("nan")], [1.0], ["c"], "finite"),
])
def test_bad_input(a, b, groups, message):
    with pytest.raises(ValueError, match=message):
        paired_randomization_test(a, b, groups)
