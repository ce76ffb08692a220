"""Exact merge of per-shard top-k lists into one top-k: the step that makes N shards answer
like one index.

Each shard returns its own best ``k`` (enough: a document in the global top ``k`` is in its
shard's top ``k``), with rows already in the global numbering. The merge drops deleted rows
and sorts by descending score, ties by global row, so the result does not depend on the order
in which shards answered.
"""
from __future__ import annotations

import numpy as np


def merge_topk(parts: list[tuple[np.ndarray, np.ndarray]], k: int,
               drop: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``parts``: per shard ``(scores [Q, k_s], rows [Q, k_s])``, rows global, -1 = no result.

    -> ``(scores [Q, k'], rows [Q, k'])`` with k' = min(k, total columns); a slot without a
    result (every shard ran out) has row -1 and score -inf. ``drop``: sorted global rows that
    must never be returned (deleted documents)."""
    scores = np.concatenate([np.asarray(s, dtype=np.float32) for s, _ in parts], axis=1)
    rows = np.concatenate([np.asarray(r, dtype=np.int64) for _, r in parts], axis=1)
    invalid = rows < 0
    if drop is not None and len(drop):
        invalid |= np.isin(rows, drop)
    scores = np.where(invalid, -np.inf, scores)
    rows = np.where(invalid, np.iinfo(np.int64).max, rows)  # invalid slots sort last among equals
    order = np.lexsort((rows, -scores), axis=1)[:, :min(k, rows.shape[1])]
    top_s, top_r = np.take_along_axis(scores, order, 1), np.take_along_axis(rows, order, 1)
    top_r[np.isneginf(top_s)] = -1
    return top_s, top_r
