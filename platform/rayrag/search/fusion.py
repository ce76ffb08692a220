"""Rank fusion of several retrievers' runs.

* RRF: ``sum_i 1 / (k + rank_i(d))``, Cormack, Clarke & Buettcher, "Reciprocal Rank Fusion
  outperforms Condorcet and individual Rank Learning Methods" (SIGIR 2009).
* Weighted score fusion: ``sum_i w_i * minmax_i(score_i(d))`` per query, a document missing
  from a run contributing 0 (the usual convex combination, e.g. Bruch et al., 2023).
"""
from __future__ import annotations

from typing import Mapping, Sequence

from ..data.beir import Document
from .base import Retriever, Run


def _queries(runs: Sequence[Run]) -> list[str]:
    """Every query of the runs, in the order they first appear: a set's order changes with each
    process's string hashing, and it is the order a fused run's TREC file is written in."""
    return list(dict.fromkeys(q for run in runs for q in run))


def rrf(runs: Sequence[Run], k: int = 60) -> Run:
    fused: Run = {}
    for qid in _queries(runs):
        scores: dict[str, float] = {}
        for run in runs:
            for rank, (doc, _) in enumerate(run.get(qid, ()), 1):
                scores[doc] = scores.get(doc, 0.0) + 1.0 / (k + rank)
        fused[qid] = sorted(scores.items(), key=lambda x: (-x[1], x[0]))
    return fused


def minmax(values: Sequence[float]) -> list[float]:
    """Scores scaled to [0, 1] within one list; all-equal scores become 1."""
    lo, hi = min(values, default=0.0), max(values, default=0.0)
    return [(v - lo) / (hi - lo) if hi > lo else 1.0 for v in values]


def weighted_sum(runs: Sequence[Run], weights: Sequence[float]) -> Run:
    fused: Run = {}
    for qid in _queries(runs):
        scores: dict[str, float] = {}
        for run, w in zip(runs, weights):
            hits = run.get(qid, ())
            for (doc, _), norm in zip(hits, minmax([s for _, s in hits])):
                scores[doc] = scores.get(doc, 0.0) + w * norm
        fused[qid] = sorted(scores.items(), key=lambda x: (-x[1], x[0]))
    return fused


class FusionRetriever(Retriever):
    def __init__(self, parts: list[Retriever], method: str, name: str, rrf_k: int = 60,
                 weights: list[float] | None = None, depth: int = 1000):
        if method not in ("rrf", "wsum"):
            raise ValueError(f"fusion method must be rrf or wsum, got {method!r}")
        if weights is not None and len(weights) != len(parts):
            raise ValueError(f"{name}: {len(weights)} fusion weights for {len(parts)} retrievers")
        self.parts, self.method, self.name = parts, method, name
        self.rrf_k, self.depth = rrf_k, depth
        self.weights = weights or [1.0 / len(parts)] * len(parts)

    def index(self, corpus: Mapping[str, Document]) -> None:
        for p in self.parts:
            p.index(corpus)

    def search(self, queries: Mapping[str, str], k: int) -> Run:
        self._check_k(k)
        runs = [p.search(queries, max(k, self.depth)) for p in self.parts]
        fused = rrf(runs, self.rrf_k) if self.method == "rrf" else weighted_sum(runs, self.weights)
        return {q: hits[:k] for q, hits in fused.items()}


def components(retriever: Retriever) -> list[Retriever]:
    """The retrievers that index the corpus for ``retriever``: a fusion's parts (nested fusions
    opened up, each object once), or the retriever itself."""
    if not isinstance(retriever, FusionRetriever):
        return [retriever]
    seen: dict[int, Retriever] = {}
    for part in retriever.parts:
        for leaf in components(part):
            seen.setdefault(id(leaf), leaf)
    return list(seen.values())
