"""What the replicas compute, without Ray: load an index + encoder + passages, or a reranker.

The deployments wrap these classes; the benchmark calls them directly as the in-process
baseline, so "Serve overhead" compares the same code with and without Serve around it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..assets import BUILTINS
from ..errors import DataError
from ..index.passages import load_passages
from .artifacts import fetch, model_ref
from .config import ServeConfig


class SearchEngine:
    """Query encoder + saved index + passage text for one served index."""

    def __init__(self, cfg: ServeConfig):
        from ..index.store import index_kind, load_index, read_manifest

        folder = fetch(cfg.index)
        manifest = read_manifest(folder)
        # as IndexRetriever does: a built-in by name, anything else by the path the encode job saw
        model = cfg.query_model or (manifest["model"] if manifest["model"] in BUILTINS
                                    else manifest.get("model_path", manifest["model"]))
        self.kind = index_kind(manifest)
        if self.kind == "dense":
            from ..models.reasoning_encoder import load_dense_encoder

            # an LREM index reasons before it embeds (cfg.reasoning); generation is batched
            # across the requests the deployment batches, like any query encoding
            try:
                self.encoder = load_dense_encoder(model_ref(model), cfg.max_query_tokens, reasoning=cfg.reasoning,
                                                  margin=cfg.reasoning_margin)
            except ValueError as e:
                raise DataError(str(e)) from None
            dim = self.encoder.dim
        else:
            if cfg.reasoning is not None:
                raise DataError(f"reasoning={cfg.reasoning!r} was set, but {cfg.index} is a sparse index: "
                                f"only an LREM reasoning embedder's (dense) index can reason")
            from ..models.sparse import SpladeEncoder

            self.encoder = SpladeEncoder(model_ref(model), max_length=cfg.max_query_tokens or 256)
            dim = self.encoder.vocab_size
        self.loaded = load_index(folder, expected_dim=dim, shard_actor_cpus=cfg.shard_actor_cpus)
        self.ids = self.loaded.ids
        if self.loaded.passages is not None and not cfg.corpus:
            # stored beside the index: memory-mapped, so the replica holds only what it returns
            self.passages = self.loaded.passages
        else:  # an older index, or a corpus asked for by name: the passages are read into memory
            if len({e.get("corpus_sha256") for e in manifest.get("shards", [])}) > 1:
                raise DataError(f"{cfg.index} holds shards appended from other corpora: one corpus file cannot "
                                f"give all their passages; serve it with its stored passages (no `corpus`)")
            corpus = Path(cfg.corpus).expanduser().resolve() if cfg.corpus else Path(manifest.get("corpus", ""))
            # An overridden corpus is still checked against the checksum the index recorded.
            self.passages = load_passages(corpus, manifest.get("corpus_sha256"), self.ids)
        self.model_name = cfg.model_name or manifest["model"]
        self.dim = dim
        self.manifest = manifest
        self.with_assistant = cfg.messages_with_assistant

    def search(self, queries: Sequence[str], k: int) -> list[list[tuple[str, float]]]:
        """Top ``k`` ``(doc_id, score)`` per query, best first."""
        texts = list(queries)
        if self.kind == "dense":
            from ..index.faiss_index import search_faiss

            q = self._encode_queries(texts)
            scores, rows = search_faiss(self.loaded.index, q, k)
            keep = lambda j, s: j >= 0  # noqa: E731
        else:
            q = self.encoder.encode(texts, batch_size=max(1, len(texts)), progress=False)
            rows, scores = self.loaded.index.search(q, k)
            keep = lambda j, s: j >= 0 and s > 0  # noqa: E731 - score 0: no shared term, not a match
        return [[(self.ids[j], float(s)) for j, s in zip(rows[i], scores[i]) if keep(j, s)]
                for i in range(len(texts))]

    def format_conversation(self, conversation: Sequence[tuple[str, str]]) -> str:
        """The query text for a chat history: the one formatter training and evaluation use,
        cut from the oldest turn to the query encoder's token budget (never the current turn)."""
        from ..data.conversation import format_conversation

        return format_conversation([tuple(m) for m in conversation], self.encoder.tokenizer,
                                   self.encoder.max_length, with_agent=self.with_assistant)

    def embed(self, texts: Sequence[str]) -> tuple[np.ndarray, list[int]]:
        """Query embeddings exactly as search uses them, and each input's token count."""
        if self.kind != "dense":
            raise DataError(f"{self.model_name} is a sparse (SPLADE) encoder; it has no dense embeddings")
        return self._encode_queries(list(texts)), self.count_tokens(texts)

    def _encode_queries(self, texts: list[str]) -> np.ndarray:
        from ..search.indexed import encode_for_index

        return encode_for_index(self.encoder, texts, self.loaded.index, batch_size=max(1, len(texts)), progress=False)

    @property
    def stats(self) -> dict[str, float]:
        """A reasoning embedder's counts since the replica started (routed share, format-valid rate)."""
        return dict(getattr(self.encoder, "stats", None) or {})

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        enc = self.encoder.tokenizer(list(texts), truncation=True, max_length=self.encoder.max_length)
        return [len(ids) for ids in enc["input_ids"]]


class RerankEngine:
    """A reranker scoring (query, document) pairs from many requests in one forward pass."""

    def __init__(self, cfg: ServeConfig):
        from ..assets import resolve_model
        from ..models.reranker import load_reranker, reranker_kind

        ref = model_ref(cfg.reranker)
        path = Path(resolve_model(ref).path)
        # Refuses a checkpoint without trained scoring weights unless the development flag is on.
        self.reranker = load_reranker(ref, kind=reranker_kind(path), max_length=cfg.reranker_max_length,
                                      batch_size=cfg.rerank_batch_pairs,
                                      allow_untrained=cfg.dev_untrained_reranker)
        limit = getattr(getattr(self.reranker.model, "config", None), "max_position_embeddings", None)
        if limit and self.reranker.max_length > limit:  # longer pairs would index past the position table
            self.reranker.max_length = int(limit)
        self.name = cfg.reranker_name or cfg.reranker

    def score_pairs(self, queries: Sequence[str], docs: Sequence[str]) -> np.ndarray:
        """float32 [len(docs)]: ``queries[i]`` against ``docs[i]``, pairs from many requests in
        length-sorted batches of ``rerank_batch_pairs``, by the library reranker's own scorer."""
        return self.reranker.score_pairs(queries, docs)
