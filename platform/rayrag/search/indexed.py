"""Retrieval from a saved index folder (``index:<path>``): the query encoder comes from its manifest."""
from __future__ import annotations

from typing import Mapping

from ..data.beir import Document
from ..index.faiss_index import FaissParams, search_faiss, set_search_params
from ..index.store import index_kind, load_index, read_manifest
from .base import Retriever, Run


def encode_for_index(encoder, texts: list[str], faiss_index, **kw):
    """Query embeddings for searching ``faiss_index``: an encoder that routes (an LREM model in
    reasoning mode auto) is given the index's top-2 lookup; any other dense encoder encodes as usual."""
    if getattr(encoder, "routes", False):
        kw["top2"] = lambda q: search_faiss(faiss_index, q, 2)[0]
    return encoder.encode_queries(texts, **kw)


class IndexRetriever(Retriever):
    """Searches a prebuilt index; ``index()`` only checks the corpus matches the index's ids."""

    def __init__(self, folder: str, name: str | None = None, batch_size: int = 64,
                 max_length: int | None = None, faiss: FaissParams | None = None, reasoning: str | None = None,
                 reasoning_margin: float = 0.02, cot: str = "own", shard_actor_cpus: float | None = None):
        self.name = name or f"index:{folder}"
        self.loaded = None
        self.folder = folder
        self.batch_size, self.max_length = batch_size, max_length
        self.faiss_params = faiss
        self.reasoning, self.reasoning_margin = reasoning, reasoning_margin  # None: on, for a reasoning model
        self.cot = cot  # a reasoning model's CoT ablation (own | empty | random | query | file:<jsonl>)
        self.shard_actor_cpus = shard_actor_cpus  # a sharded index: its shards on Ray actors of this many CPUs

    def index(self, corpus: Mapping[str, Document] | None = None) -> None:
        from ..errors import DataError

        from pathlib import Path

        from ..assets import BUILTINS

        # Only the manifest is needed to pick the encoder; load_index (checksums, sizes) runs once, below.
        manifest = read_manifest(Path(self.folder))
        model = manifest["model"]
        model_ref = model if model in BUILTINS else manifest.get("model_path", model)
        if index_kind(manifest) == "dense":
            from ..models.reasoning_encoder import load_dense_encoder

            # an LREM index's queries reason-then-embed (options.reasoning); the rest embed directly
            self.encoder = load_dense_encoder(model_ref, self.max_length, reasoning=self.reasoning,
                                              margin=self.reasoning_margin, cot=self.cot)
            dim = self.encoder.dim
        else:
            from ..models.sparse import SpladeEncoder

            self.encoder = SpladeEncoder(model_ref, max_length=self.max_length or 256)
            dim = self.encoder.vocab_size
        self.loaded = load_index(self.folder, expected_dim=dim, shard_actor_cpus=self.shard_actor_cpus)
        if self.loaded.kind == "dense" and self.faiss_params is not None:
            set_search_params(self.loaded.index, self.faiss_params)
        if corpus is not None:
            missing = len(set(corpus) - set(self.loaded.ids))
            if missing:
                raise DataError(f"{self.folder}: {missing} documents of the evaluated corpus are not in the index")

    def search(self, queries: Mapping[str, str], k: int) -> Run:
        self._check_k(k)
        if self.loaded is None:
            self.index(None)
        qids = list(queries)
        texts = [queries[q] for q in qids]
        ids = self.loaded.ids
        if self.loaded.kind == "dense":
            q = encode_for_index(self.encoder, texts, self.loaded.index, batch_size=self.batch_size,
                                 desc=f"{self.name}: encode queries")
            scores, rows = search_faiss(self.loaded.index, q, k)
        else:
            q = self.encoder.encode(texts, batch_size=self.batch_size, desc=f"{self.name}: encode queries")
            rows, scores = self.loaded.index.search(q, k)
        return {qid: [(ids[j], float(s)) for j, s in zip(rows[i], scores[i]) if j >= 0 and (
            self.loaded.kind == "dense" or s > 0)] for i, qid in enumerate(qids)}

    @property
    def stats(self) -> dict[str, float]:
        """A reasoning embedder's own figures (routed share, format-valid rate); else none."""
        return dict(getattr(getattr(self, "encoder", None), "stats", None) or {})
