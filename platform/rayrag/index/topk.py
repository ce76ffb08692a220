"""Exact top-k over a dense score matrix: the one ranking step every backend shares.

It lives with the indexes, the lowest layer that ranks (the inverted index uses it); search
and training evaluation sit above and import it from here.
"""
from __future__ import annotations

import numpy as np


def top_k_rows(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """scores [Q, N] -> (indices [Q, k'], values [Q, k']) sorted by descending score.

    Ties are broken by column index so results are deterministic across runs.
    """
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]  # [Q, k] unordered
    vals = np.take_along_axis(scores, part, 1)
    order = np.lexsort((part, -vals), axis=1)  # primary: -score, secondary: column
    idx = np.take_along_axis(part, order, 1)
    return idx, np.take_along_axis(scores, idx, 1)
