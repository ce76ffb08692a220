"""Whether a per-step training curve moved: its last stretch against its first.

The RL stage's acceptance asks whether the mean reward over the last 10% of steps exceeds the
first 10% by more than two standard errors. One step's value is already a mean over its samples,
but steps are noisy and few, so the unit here is the step: each window's mean, the standard error
of their difference from the two windows' sample variances (Welch), and z = difference / SE.
Neighbouring steps are correlated (the policy changes slowly), which makes this SE optimistic;
it is a screen for "the curve went somewhere", not a significance test.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

MIN_WINDOW = 2  # a window needs two steps for a variance


def trend(values: Sequence[float], share: float = 0.1) -> dict[str, float | None] | None:
    """First vs last ``share`` of ``values`` (at least 2 steps each; None if the curve is shorter
    than two such windows): their means, the difference, its standard error and z."""
    if not 0 < share <= 0.5:
        raise ValueError(f"share must be in (0, 0.5], got {share}")
    n = max(MIN_WINDOW, round(share * len(values)))
    if 2 * n > len(values):
        return None
    first, last = list(values[:n]), list(values[-n:])
    m1, m2 = sum(first) / n, sum(last) / n
    var1 = sum((v - m1) ** 2 for v in first) / (n - 1)
    var2 = sum((v - m2) ** 2 for v in last) / (n - 1)
    se = math.sqrt(var1 / n + var2 / n)
    diff = m2 - m1
    # no spread in either window: z is 0 without a change, else undefined (None: JSON has no inf)
    z = diff / se if se > 0 else (0.0 if diff == 0 else None)
    return {"first": m1, "last": m2, "diff": diff, "se": se, "z": z, "window_steps": n}


def trends(curves: Mapping[str, Sequence[float]], share: float = 0.1) -> dict[str, dict[str, float]]:
    """``trend`` of every curve long enough to have one."""
    out = {}
    for name, values in curves.items():
        t = trend(values, share)
        if t is not None:
            out[name] = t
    return out


def plot_curves(curves: Mapping[str, Sequence[float]], title: str, first_step: int = 1):
    """One small panel per curve against the optimizer step (the first value's is ``first_step``);
    returns the figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted(curves)
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.6 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        ax.plot(range(first_step, first_step + len(curves[name])), curves[name], lw=1)
        ax.set_title(name, fontsize=9)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    return fig
