"""Second stage: re-score a first-stage run's top documents with a reranker."""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

from tqdm.auto import tqdm

from ..data.beir import Document
from .base import Retriever, Run
from .fusion import weighted_sum

# (query, document texts) -> scores, higher is better
Scorer = Callable[[str, Sequence[str]], Sequence[float]]


def rerank_run(run: Run, queries: Mapping[str, str], corpus: Mapping[str, Document], scorer: Scorer,
               depth: int, progress: bool = True) -> Run:
    """Re-score each query's first ``depth`` documents; those below ``depth`` keep their order
    after them, so recall at the run's full depth is unchanged."""
    out: Run = {}
    for qid in tqdm(list(run), desc="rerank", unit="query", disable=not progress, mininterval=10):
        head = run[qid][:depth]
        scores = scorer(queries[qid], [corpus[d].full_text for d, _ in head])
        rescored = sorted(zip((d for d, _ in head), map(float, scores)), key=lambda x: (-x[1], x[0]))
        out[qid] = _with_tail(rescored, run[qid][depth:])
    return out


def check_interpolation_weight(weight: float) -> float:
    """The one range rule for an interpolation weight, used by :func:`interpolate`, the evaluate
    job's ``rerank_interpolate`` and Serve's: ``0 <= w <= 1`` (0 is the first stage alone, 1 the
    reranker alone, both min-max normalised). NaN is refused too."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"interpolation weights must be in [0, 1] (0: first stage alone, 1: reranker alone), "
                         f"got {weight}")
    return weight


def interpolate(first: Run, reranked: Run, depth: int, weight: float) -> Run:
    """``weight * minmax(reranker) + (1 - weight) * minmax(first stage)`` over each query's top
    ``depth`` (``reranked`` from :func:`rerank_run` on ``first``); the tail stays as in
    :func:`rerank_run`. Interpolating the two stages is the usual remedy when a reranker trained
    on little data is not better than its first stage everywhere (e.g. Wang, Zhuang & Zuccon,
    "BERT-based Dense Retrievers Require Interpolation with BM25", ICTIR 2021)."""
    check_interpolation_weight(weight)
    heads = [{q: r[:depth] for q, r in run.items()} for run in (first, reranked)]
    fused = weighted_sum(heads, [1.0 - weight, weight])
    return {q: _with_tail(fused.get(q, []), first[q][depth:]) for q in first}


def _with_tail(head: list[tuple[str, float]], tail: Sequence[tuple[str, float]]) -> list[tuple[str, float]]:
    """``head`` then ``tail`` in its order, scored strictly below every head document."""
    floor = min((s for _, s in head), default=0.0)
    return list(head) + [(d, floor - 1.0 - i) for i, (d, _) in enumerate(tail)]


class RerankedRetriever(Retriever):
    """``first`` retrieves, a reranker (``rayrag.models.reranker``) re-scores its top ``depth``."""

    def __init__(self, first: Retriever, reranker_model: str, depth: int = 100, batch_size: int = 32,
                 max_length: int | None = None, name: str | None = None):
        from ..models.reranker import load_reranker

        self.first, self.depth = first, depth
        self.reranker = load_reranker(reranker_model, batch_size=batch_size, max_length=max_length)
        self.name = name or f"{first.name}>>{reranker_model}"
        self._corpus: Mapping[str, Document] = {}

    def index(self, corpus: Mapping[str, Document]) -> None:
        self.first.index(corpus)
        self._corpus = corpus

    def search(self, queries: Mapping[str, str], k: int) -> Run:
        self._check_k(k)
        run = self.first.search(queries, max(k, self.depth))
        return {q: r[:k] for q, r in rerank_run(run, queries, self._corpus, self.reranker.score, self.depth).items()}
