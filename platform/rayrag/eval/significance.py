"""Paired randomization test with conversations as the unit of permutation.

Fisher's randomization test as recommended for IR by Smucker, Allan & Carterette, "A
Comparison of Statistical Significance Tests for Information Retrieval Evaluation" (CIKM
2007): under the null hypothesis that systems A and B are exchangeable, each unit's
difference A - B is as likely to have the opposite sign. Turns of one conversation are
correlated (same topic, same passages), so the unit here is a conversation: all of its turns
flip sign together. Treating turns as independent would make p too small.

Statistic: |mean over turns of (A - B)|, two-sided. With few conversations (2^G sign patterns
at most ``n_permutations``) every pattern is enumerated and p is exact; otherwise
``n_permutations`` patterns are drawn with a fixed seed and p = (1 + hits) / (1 + n), which
never reports 0 for a sampled test.
"""
from __future__ import annotations

import itertools
from typing import Mapping, Sequence

import numpy as np


def paired_randomization_test(a: Sequence[float], b: Sequence[float], groups: Sequence[str],
                              n_permutations: int = 10_000, seed: int = 0) -> float:
    """Two-sided p-value of mean(a - b), flipping signs per group (conversation)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if not (a.shape == b.shape == (len(groups),)) or not len(groups):
        raise ValueError(f"a, b and groups must be equally long and non-empty, got {a.shape}, {b.shape}, {len(groups)}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("metric values must be finite")
    if n_permutations < 1:
        raise ValueError(f"n_permutations must be >= 1, got {n_permutations}")
    _, group_idx = np.unique(np.asarray(groups, dtype=object).astype(str), return_inverse=True)
    sums = np.bincount(group_idx, weights=a - b)  # [G]: a conversation's turns flip together
    # The mean over turns is the sum over groups / number of turns; the count is the same for
    # every sign pattern, so compare sums. The tolerance keeps float noise from deciding ties.
    observed = abs(sums.sum())
    tol = 1e-9 * max(1.0, observed)
    g = len(sums)
    if 2 ** g <= n_permutations:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=g)))  # [2^G, G]
        return float(np.mean(np.abs(signs @ sums) >= observed - tol))
    rng = np.random.default_rng(seed)
    hits, done = 0, 0
    while done < n_permutations:  # chunks keep the sign matrix small for many conversations
        n = min(4096, n_permutations - done)
        signs = rng.choice((1.0, -1.0), size=(n, g))  # [n, G]
        hits += int(np.sum(np.abs(signs @ sums) >= observed - tol))
        done += n
    return (1 + hits) / (1 + n_permutations)


def paired_test_by_conversation(a: Mapping[str, float], b: Mapping[str, float], conversation_of: Mapping[str, str],
                                n_permutations: int = 10_000, seed: int = 0) -> float:
    """The same test on per-turn metrics keyed by query id (e.g. ``evaluate_per_query`` output)."""
    if set(a) != set(b):
        raise ValueError(f"systems A and B were scored on different turns ({len(set(a) ^ set(b))} differ)")
    missing = [q for q in a if q not in conversation_of]
    if missing:
        raise ValueError(f"no conversation id for {len(missing)} turns, e.g. {missing[0]!r}")
    qids = sorted(a)
    return paired_randomization_test([a[q] for q in qids], [b[q] for q in qids],
                                     [conversation_of[q] for q in qids], n_permutations, seed)


def paired_test_by_query(a: Mapping[str, float], b: Mapping[str, float], n_permutations: int = 10_000,
                         seed: int = 0) -> float:
    """The test with each query its own unit (BEIR queries are independent of each other)."""
    return paired_test_by_conversation(a, b, {q: q for q in a}, n_permutations, seed)


def parse_pair(text: object, names: Sequence[str]) -> tuple[str, str]:
    """``"a vs b"`` -> (a, b), both among ``names`` and different; else ValueError."""
    a, sep, b = text.partition(" vs ") if isinstance(text, str) else ("", "", "")
    a, b = a.strip(), b.strip()
    if not sep or a not in names or b not in names or a == b:
        raise ValueError(f"{text!r} must be '<name> vs <other name>' with names from {list(names)}")
    return a, b


def parse_pair_list(pairs: Sequence[object], names: Sequence[str]) -> list[tuple[str, str]]:
    """Every pair parsed (``parse_pair``); duplicates refused. Raises ValueError."""
    out = [parse_pair(p, names) for p in pairs]
    if len(set(out)) != len(out):
        raise ValueError(f"duplicates in {list(pairs)}")
    return out
