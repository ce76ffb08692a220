"""Retrieval with an LREM reasoning embedder over an in-memory corpus (``reasoning:<folder>``).

Items are embedded directly, queries reason-then-embed under ``mode`` (on | off | auto) and
``cot`` (the ablations); both live in ``models.reasoning_encoder.ReasoningEncoder``, which the
encode job, index search and Serve share. ``stats`` reports the share routed and the CoTs' validity.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from ..data.beir import Document
from ..index.topk import top_k_rows
from ..models.reasoning_encoder import ReasoningEncoder
from .base import Retriever, Run


class ReasoningRetriever(Retriever):
    def __init__(self, model, mode: str = "on", margin: float = 0.02, cot: str = "own", batch_size: int = 32,
                 name: str | None = None):
        """``model``: a folder, HF id or built-in name, or a ``ReasoningModel`` already in memory
        (training's end-of-epoch evaluation searches with the model being trained)."""
        self.encoder = ReasoningEncoder(model, mode=mode, margin=margin, cot=cot)
        self.name = name or f"reasoning:{model}"
        self.batch_size = batch_size
        self._ids: list[str] = []
        self._pos: dict[str, int] = {}
        self._emb: np.ndarray | None = None

    @property
    def stats(self) -> dict[str, float]:
        return self.encoder.stats

    def index(self, corpus: Mapping[str, Document]) -> None:
        self._ids = list(corpus)
        self._pos = {d: i for i, d in enumerate(self._ids)}
        self._emb = self.encoder.encode_docs([corpus[i].full_text for i in self._ids], self.batch_size,
                                             desc=f"{self.name}: encode corpus")

    def _top2(self, q: np.ndarray) -> np.ndarray:
        return top_k_rows(q @ self._emb.T, 2)[1]

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        if self._emb is None and self.encoder.routes:
            raise RuntimeError("index() must be called before reasoning mode auto can route")
        return self.encoder.encode_queries(texts, self.batch_size, desc=f"{self.name}: encode queries",
                                           top2=self._top2 if self._emb is not None else None)

    def search(self, queries: Mapping[str, str], k: int) -> Run:
        self._check_k(k)
        if self._emb is None:
            raise RuntimeError("index() must be called before search()")
        qids = list(queries)
        q = self.encode_queries([queries[x] for x in qids])
        idx, vals = top_k_rows(q @ self._emb.T, k)
        return {qid: [(self._ids[j], float(s)) for j, s in zip(idx[r], vals[r])] for r, qid in enumerate(qids)}

    def score(self, query: str, doc_ids: list[str]) -> list[float]:
        q = self.encode_queries([query])[0]
        return [float(self._emb[self._pos[d]] @ q) for d in doc_ids]
