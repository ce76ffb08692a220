"""Exact dense retrieval: inner product against every document embedding."""
from __future__ import annotations

from typing import Mapping

import numpy as np

from ..data.beir import Document
from ..index.topk import top_k_rows
from ..models.dense import DenseEncoder
from .base import Retriever, Run


class DenseRetriever(Retriever):
    def __init__(self, model: str, batch_size: int = 64, max_length: int | None = None,
                 query_prefix: str | None = None, doc_prefix: str | None = None, pooling: str | None = None,
                 name: str | None = None, ann=None):
        """``ann``: FaissParams to search a FAISS index built over the embeddings instead of
        exact search (``minilm+hnsw``)."""
        self.name = name or model
        self.ann = ann
        self._faiss = None
        self.encoder = DenseEncoder(model, pooling=pooling, max_length=max_length,
                                    query_prefix=query_prefix, doc_prefix=doc_prefix)
        self.batch_size = batch_size
        self._ids: list[str] = []
        self._emb: np.ndarray | None = None

    def index(self, corpus: Mapping[str, Document]) -> None:
        self._ids = list(corpus)
        self._emb = self.encoder.encode_docs([corpus[i].full_text for i in self._ids],
                                             batch_size=self.batch_size, desc=f"{self.name}: encode corpus")
        if self.ann is not None:
            from ..index.faiss_index import build_faiss

            self._faiss = build_faiss(self._emb, self.ann)

    def score(self, query: str, doc_ids: list[str]) -> list[float]:
        if not hasattr(self, "_pos"):
            self._pos = {d: i for i, d in enumerate(self._ids)}
        q = self.encoder.encode_queries([query], progress=False)[0]
        return [float(self._emb[self._pos[d]] @ q) for d in doc_ids]

    def search(self, queries: Mapping[str, str], k: int, chunk: int = 1024) -> Run:
        self._check_k(k)
        if self._emb is None:
            raise RuntimeError("index() must be called before search()")
        qids = list(queries)
        q = self.encoder.encode_queries([queries[i] for i in qids], batch_size=self.batch_size,
                                        desc=f"{self.name}: encode queries")
        run: Run = {}
        if self._faiss is not None:
            from ..index.faiss_index import search_faiss

            vals, idx = search_faiss(self._faiss, q, k)
            return {qid: [(self._ids[j], float(v)) for j, v in zip(idx[r], vals[r]) if j >= 0]
                    for r, qid in enumerate(qids)}
        for s in range(0, len(qids), chunk):  # bounds the [chunk, N] score matrix
            idx, vals = top_k_rows(q[s:s + chunk] @ self._emb.T, k)
            for row, qid in enumerate(qids[s:s + chunk]):
                run[qid] = [(self._ids[j], float(v)) for j, v in zip(idx[row], vals[row])]
        return run
