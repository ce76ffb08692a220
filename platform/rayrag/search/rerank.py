"""Second stage: re-score a first-stage run's top documents with a reranker."""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

from tqdm.auto import tqdm

from ..data.beir import Document
from .base import Retriever, Run

# (query, document texts) -> scores, higher is better
Scorer = Callable[[str, Sequence[str]], Sequence[float]]


def rerank_run(run: Run, queries: Mapping[str, str], corpus: Mapping[str, Document], scorer: Scorer,
               depth: int, progress: bool = True) -> Run:
    """Re-score each query's first ``depth`` documents; those below ``depth`` keep their order
    after them, so recall at the run's full depth is unchanged."""
    out: Run = {}
    for qid in tqdm(list(run), desc="rerank", unit="query", disable=not progress, mininterval=10):
        ranked = run[qid]
        head, tail = ranked[:depth], ranked[depth:]
        scores = scorer(queries[qid], [corpus[d].full_text for d, _ in head])
        rescored = sorted(zip((d for d, _ in head), map(float, scores)), key=lambda x: (-x[1], x[0]))
        if tail:  # keep the tail strictly below every re-scored document
            floor = min(s for _, s in rescored) if rescored else 0.0
            tail = [(d, floor - 1.0 - i) for i, (d, _) in enumerate(tail)]
        out[qid] = rescored + tail
    return out


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
