"""A training curve's last stretch against its first (train/curves.py), by hand."""
import math

import pytest

from rayrag.train.curves import plot_curves, trend, trends


def test_trend_matches_a_hand_computed_case():
    values = [1.0, 3.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 4.0, 8.0]  # 10 steps -> windows of 2 (not 1)
    t = trend(values)
    # first 1, 3: mean 2, var 2; last 4, 8: mean 6, var 8; se = sqrt(2/2 + 8/2) = sqrt(5)
    assert t == pytest.approx({"first": 2.0, "last": 6.0, "diff": 4.0, "se": math.sqrt(5),
                               "z": 4 / math.sqrt(5), "window_steps": 2})
    t = trend(list(range(60)))  # 10% of 60 = 6 steps a window
    assert t["window_steps"] == 6 and t["first"] == 2.5 and t["last"] == 56.5


def test_flat_short_and_bad_curves():
    assert trend([2.0] * 10)["z"] == 0.0  # no spread, no change
    assert trend([0, 0, 1, 1])["z"] is None  # no spread, a change: undefined
    assert trend([1.0, 2.0, 3.0]) is None  # too short for two windows of two
    assert trends({"a": [1, 2, 3], "b": [1, 2, 3, 4]}) == {"b": pytest.approx(trend([1, 2, 3, 4]))}
    with pytest.raises(ValueError, match="share"):
        trend([1.0] * 10, share=0.0)


def test_plot_has_a_panel_per_curve():
    fig = plot_curves({"rl/reward": [1, 2, 3], "rl/format_valid": [0.1, 0.5, 0.9], "x": [1, 1, 1],
                       "y": [2, 2, 2]}, "t")
    titled = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert sorted(titled) == ["rl/format_valid", "rl/reward", "x", "y"]
