"""Retriever settings shared by every job that builds retrievers from names."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..index.faiss_index import FaissParams


@dataclass
class RetrieverOptions:
    batch_size: int = 64  # dense encoding batch
    sparse_batch_size: int = 16  # SPLADE: the MLM head makes [tokens, 30k] logits, keep batches small
    max_length: int | None = None  # None: the model's own (MiniLM: 256)
    sparse_max_length: int = 256
    bm25_k1: float = 0.9
    bm25_b: float = 0.4
    rrf_k: int = 60  # reciprocal rank fusion constant (Cormack et al., 2009)
    fusion_weights: list[float] | None = None  # hybrid(): one weight per part; None = equal
    fusion_depth: int = 1000  # candidates each part contributes to a fusion
    faiss: FaissParams = field(default_factory=FaissParams)  # for "<model>+hnsw" etc.
    # index:<sharded folder>: search each shard in a Ray actor (spread over the cluster's nodes)
    # instead of in the retriever's process; each actor reserves shard_actor_cpus
    shard_actors: bool = False
    shard_actor_cpus: float = 1.0
    # reasoning:<folder> (LREM): on = write a CoT then embed; off = embed the query directly;
    # auto = reason only for queries whose direct top-1 margin is below reasoning_margin
    reasoning: str = "on"
    reasoning_margin: float = 0.02
    # ablations of the CoT a query embeds after (reasoning on): own | empty | random | query, or
    # file:<jsonl> for given thoughts (the CoT job's output: a teacher's thought per query). Like
    # an index: folder, the file is an earlier job's output, read when the retriever is built.
    cot: str = "own"

    def validate(self) -> None:
        from ..errors import ConfigError

        if self.reasoning not in ("on", "off", "auto"):
            raise ConfigError(f"options.reasoning must be on, off or auto, got {self.reasoning!r}")
        if self.cot not in ("own", "empty", "random", "query") and not (
                isinstance(self.cot, str) and self.cot.startswith("file:") and len(self.cot) > len("file:")):
            raise ConfigError(f"options.cot must be own, empty, random, query or file:<jsonl>, got {self.cot!r}")
        if self.reasoning_margin < 0:
            raise ConfigError("options.reasoning_margin must be >= 0")
        if isinstance(self.shard_actor_cpus, bool) or not self.shard_actor_cpus > 0:
            raise ConfigError("options.shard_actor_cpus must be > 0")
