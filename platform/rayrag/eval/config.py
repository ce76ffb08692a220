"""Config of the evaluate job."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ConfigError
from ..search.options import RetrieverOptions
from .metrics import parse_metric

DEFAULT_RETRIEVERS = ["bm25", "minilm", "splade-tiny"]


@dataclass
class EvaluateConfig:
    dataset: str = "scifact"
    split: str = "test"
    data_dir: str | None = None  # default: $RAYRAG_DATA_DIR
    output_dir: str = "out/evaluate"
    # names (see rayrag.search.registry); "label=spec" reports spec's results under label
    retrievers: list[str] = field(default_factory=lambda: list(DEFAULT_RETRIEVERS))
    depth: int = 100  # documents retrieved per query (run file depth)
    metrics: list[str] = field(default_factory=lambda: ["ndcg@10", "recall@100", "mrr@10", "map@100"])
    cpus_per_retriever: float = 1.0  # Ray task size; torch threads follow it
    num_cpus: int | None = None  # local Ray only: CPUs to give the node (default: all)
    rerank: str | None = None  # reranker model (folder, run artifact, built-in): adds "<label>>>rerank" rows
    rerank_depth: int = 100  # first-stage documents the reranker re-scores
    rerank_batch_size: int = 32
    # each w adds "<label>>>rerank+first@w": w * reranker + (1 - w) * first stage, both min-max
    # normalised per query over the reranked top (search.rerank.interpolate); one reranker pass;
    # 0 <= w <= 1, the rule Serve's rerank_interpolate follows (search.rerank.check_interpolation_weight)
    rerank_interpolate: list[float] = field(default_factory=list)
    experiment: str = "rayrag"
    options: RetrieverOptions = field(default_factory=RetrieverOptions)

    def validate(self) -> None:
        from ..search.registry import split_label, validate_spec
        from ..search.rerank import check_interpolation_weight

        if not self.retrievers:
            raise ConfigError("retrievers: give at least one retriever")
        labels = [split_label(r)[0] for r in self.retrievers]
        if len(set(labels)) != len(labels):
            raise ConfigError(f"retrievers: duplicate names in {labels}")
        for spec in self.retrievers:
            validate_spec(spec)
        if self.depth < 1:
            raise ConfigError(f"depth must be >= 1, got {self.depth}")
        for m in self.metrics:
            try:
                _, k = parse_metric(m)
            except ValueError as e:
                raise ConfigError(f"metrics: {e}") from None
            if k is not None and k > self.depth:
                raise ConfigError(f"metrics: {m} needs depth >= {k}, but depth is {self.depth}")
        if self.rerank_depth < 1 or self.rerank_batch_size < 1:
            raise ConfigError("rerank_depth and rerank_batch_size must be >= 1")
        for w in self.rerank_interpolate:
            try:
                check_interpolation_weight(w)
            except ValueError as e:
                raise ConfigError(f"rerank_interpolate: {e}") from None
        if self.rerank_interpolate and not self.rerank:
            raise ConfigError("rerank_interpolate needs a reranker (rerank)")
        if self.rerank is not None and not self.rerank.strip():
            raise ConfigError("rerank: give a reranker model (folder or name), or leave it unset")
        if self.cpus_per_retriever <= 0:
            raise ConfigError(f"cpus_per_retriever must be > 0, got {self.cpus_per_retriever}")
        if not self.output_dir:
            raise ConfigError("output_dir must not be empty")
