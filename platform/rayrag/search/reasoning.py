"""Retrieval with an LREM reasoning embedder: items embedded directly, queries reason-then-embed.

``mode``: ``on`` writes a greedy keyword CoT per query, then embeds after it (the paper);
``off`` embeds ``<query><emb>`` directly; ``auto`` (beyond the paper, which describes no router)
embeds directly first and reasons only for queries whose direct top-1 score margin is below
``margin``: a small margin means the direct embedding cannot tell its best candidates apart,
the case reasoning is for. ``stats`` reports the share routed and the CoTs' validity.

``cot`` ablates the thought a query embeds after (mode on): ``own`` (the model's), ``empty``,
``random`` (as many random vocabulary tokens, seeded per query) or ``query`` (the query's own
tokens repeated as the thought, cut to the CoT limit); the paper's reasoning-text ablations.
"""
from __future__ import annotations

import hashlib
from typing import Mapping

import numpy as np

from ..data.beir import Document
from ..index.topk import top_k_rows
from .base import Retriever, Run


class ReasoningRetriever(Retriever):
    def __init__(self, model, mode: str = "on", margin: float = 0.02, cot: str = "own", batch_size: int = 32,
                 name: str | None = None):
        """``model``: a folder, HF id or built-in name, or a ``ReasoningModel`` already in memory
        (training's end-of-epoch evaluation searches with the model being trained)."""
        from ..models.reasoning import ReasoningModel

        if isinstance(model, ReasoningModel):
            self.rm = model
        else:
            from ..assets import resolve_model
            from ..models.reasoning import load_reasoning

            self.rm = load_reasoning(resolve_model(model).path)
        self.name = name or f"reasoning:{model}"
        self.mode, self.margin, self.cot, self.batch_size = mode, margin, cot, batch_size
        self._ids: list[str] = []
        self._pos: dict[str, int] = {}
        self._emb: np.ndarray | None = None
        self.stats: dict[str, float] = {}

    def index(self, corpus: Mapping[str, Document]) -> None:
        self._ids = list(corpus)
        self._pos = {d: i for i, d in enumerate(self._ids)}
        self._emb = self.rm.embed(self.rm.items([corpus[i].full_text for i in self._ids]), self.batch_size,
                                  desc=f"{self.name}: encode corpus")

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        """Query embeddings under ``mode`` (auto needs the index: see ``search``)."""
        if self.mode == "off":
            return self.rm.embed_queries(texts, reasoning=False, batch_size=self.batch_size)[0]
        return self._reason(texts)

    def _reason(self, texts: list[str]) -> np.ndarray:
        rm = self.rm
        if self.cot == "own":
            emb, cots = rm.embed_queries(texts, batch_size=self.batch_size, desc=f"{self.name}: reason, encode queries")
            self.stats.update(format_valid=float(np.mean([c.valid for c in cots])) if cots else 0.0,
                              cot_tokens=float(np.mean([c.length for c in cots])) if cots else 0.0)
            return emb
        prompts = rm.query_prompts(texts)
        if self.cot == "empty":
            thoughts = [[] for _ in texts]
        elif self.cot == "query":
            thoughts = [p[:-1][:rm.limits.max_cot_tokens] for p in prompts]
        else:  # random: the own CoT's length is unknown without generating; use the limit's half
            vocab = len(rm.tokenizer)
            special = sorted(rm.special_ids)
            thoughts = []
            for t in texts:
                rng = np.random.default_rng(int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], "little"))
                ids = [int(i) for i in rng.integers(0, vocab, rm.limits.max_cot_tokens // 2)]
                thoughts.append([i for i in ids if i not in special])
        return rm.embed(rm.query_with_cot(prompts, thoughts), self.batch_size, desc=f"{self.name}: encode queries")

    def search(self, queries: Mapping[str, str], k: int) -> Run:
        self._check_k(k)
        if self._emb is None:
            raise RuntimeError("index() must be called before search()")
        qids = list(queries)
        texts = [queries[q] for q in qids]
        if self.mode == "auto":
            q = self.rm.embed_queries(texts, reasoning=False, batch_size=self.batch_size)[0]
            _, top2 = top_k_rows(q @ self._emb.T, 2)
            hard = np.flatnonzero(top2[:, 0] - top2[:, 1] < self.margin)
            if len(hard):
                q[hard] = self._reason([texts[i] for i in hard])
            self.stats["routed_share"] = len(hard) / max(1, len(qids))
        else:
            q = self.encode_queries(texts)
        idx, vals = top_k_rows(q @ self._emb.T, k)
        return {qid: [(self._ids[j], float(s)) for j, s in zip(idx[r], vals[r])] for r, qid in enumerate(qids)}

    def score(self, query: str, doc_ids: list[str]) -> list[float]:
        q = self.encode_queries([query])[0]
        return [float(self._emb[self._pos[d]] @ q) for d in doc_ids]
