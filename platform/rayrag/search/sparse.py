"""Exact learned-sparse retrieval: sparse query x sparse document dot products."""
from __future__ import annotations

from typing import Mapping

from ..data.beir import Document
from ..models.sparse import SpladeEncoder
from ..index.sparse_index import InvertedIndex
from .base import Retriever, Run


class SpladeRetriever(Retriever):
    def __init__(self, model: str, batch_size: int = 16, max_length: int = 256,
                 doc_top_k: int | None = None, name: str | None = None):
        self.name = name or model
        self.encoder = SpladeEncoder(model, max_length=max_length)
        self.batch_size = batch_size
        self.doc_top_k = doc_top_k
        self._ids: list[str] = []
        self._docs = None  # csr [N, V]

    def index(self, corpus: Mapping[str, Document]) -> None:
        self._ids = list(corpus)
        self.encoder.top_k = self.doc_top_k
        self._docs = self.encoder.encode([corpus[i].full_text for i in self._ids],
                                         batch_size=self.batch_size, desc=f"{self.name}: encode corpus")
        self.encoder.top_k = None
        self._inverted = InvertedIndex(self._docs)  # exact: the same scores as q @ docs.T

    def score(self, query: str, doc_ids: list[str]) -> list[float]:
        if not hasattr(self, "_pos"):
            self._pos = {d: i for i, d in enumerate(self._ids)}
        q = self.encoder.encode([query], progress=False)
        rows = self._docs[[self._pos[d] for d in doc_ids]]
        return [float(v) for v in (rows @ q.T).toarray().ravel()]

    def search(self, queries: Mapping[str, str], k: int) -> Run:
        self._check_k(k)
        if self._docs is None:
            raise RuntimeError("index() must be called before search()")
        qids = list(queries)
        q = self.encoder.encode([queries[i] for i in qids], batch_size=self.batch_size,
                                desc=f"{self.name}: encode queries")
        rows, scores = self._inverted.search(q, k)
        return {qid: [(self._ids[j], float(v)) for j, v in zip(rows[i], scores[i]) if v > 0]
                for i, qid in enumerate(qids)}
