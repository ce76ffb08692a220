"""The retriever interface."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Mapping

from ..data.beir import Document

# qid -> [(docid, score)], best first. The same shape TREC run files hold.
Run = dict[str, list[tuple[str, float]]]


class Retriever(ABC):
    """Index a corpus once, then answer batches of queries with ranked ``(docid, score)``."""

    name: str

    @abstractmethod
    def index(self, corpus: Mapping[str, Document]) -> None: ...

    @abstractmethod
    def search(self, queries: Mapping[str, str], k: int) -> Run: ...

    def score(self, query: str, doc_ids: list[str]) -> list[float]:
        """Scores of given documents for one query, on the same scale as ``search``."""
        raise NotImplementedError(f"{type(self).__name__} cannot score arbitrary documents; "
                                  f"use bm25, a dense or a SPLADE retriever")

    def _check_k(self, k: int) -> None:
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
