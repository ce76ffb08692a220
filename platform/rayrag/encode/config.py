"""Config of the encode job."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError


@dataclass
class EncodeConfig:
    model: str = "minilm"  # built-in name, folder or HF id
    kind: str | None = None  # "dense" | "sparse"; None: from the built-in's kind
    dataset: str | None = "scifact"  # encodes <data dir>/<dataset>/corpus.jsonl ...
    corpus: str | None = None  # ... unless a corpus file (.jsonl or .parquet) is given
    data_dir: str | None = None
    output_dir: str = "out/encode"
    docs_per_shard: int = 512  # unit of resume and of work handed to an actor
    batch_size: int = 64  # texts per forward pass, sorted by length inside a shard
    max_length: int | None = None  # None: the model's own
    num_actors: int = 2  # encoder replicas in the actor pool
    cpus_per_actor: float = 1.0
    gpus_per_actor: float = 0.0
    threads_per_actor: int | None = None  # torch threads; None: round(cpus_per_actor)
    sparse_top_k: int | None = 256  # SPLADE: keep the k heaviest terms of each document
    overwrite: bool = False  # start over when output_dir holds a different plan
    experiment: str = "rayrag"

    def validate(self) -> None:
        if self.kind not in (None, "dense", "sparse"):
            raise ConfigError(f"kind must be dense or sparse, got {self.kind!r}")
        if not self.dataset and not self.corpus:
            raise ConfigError("give dataset=<name> or corpus=<path to .jsonl/.parquet>")
        for key in ("docs_per_shard", "batch_size", "num_actors"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.cpus_per_actor <= 0 or self.gpus_per_actor < 0:
            raise ConfigError("cpus_per_actor must be > 0 and gpus_per_actor >= 0")
        if self.sparse_top_k is not None and self.sparse_top_k < 1:
            raise ConfigError(f"sparse_top_k must be >= 1 or null, got {self.sparse_top_k}")
