"""End-of-epoch evaluation helpers shared by the objectives (rank 0 only)."""
from __future__ import annotations

import functools

from ...data.beir import BeirDataset
from ..config import TrainConfig


@functools.lru_cache(maxsize=2)
def _load(dataset: str, data_dir: str | None, split: str) -> BeirDataset:
    from ...data import dataset_dir, load_beir

    return load_beir(dataset_dir(dataset, data_dir), split)


def eval_split(cfg: TrainConfig) -> BeirDataset:
    ds = _load(cfg.dataset, cfg.data_dir, cfg.eval.split)
    if cfg.eval.max_queries:
        keep = sorted(ds.queries)[: cfg.eval.max_queries]
        ds = BeirDataset(ds.name, ds.split, ds.corpus, {q: ds.queries[q] for q in keep},
                         {q: ds.qrels[q] for q in keep}, ds.path)
    return ds


def score_run(cfg: TrainConfig, ds: BeirDataset, run) -> dict[str, float]:
    from ...eval.metrics import evaluate

    metrics = sorted({cfg.eval.metric, "recall@100"})
    return {f"eval/{m}": v for m, v in evaluate(ds.qrels, run, metrics).items()}


@functools.lru_cache(maxsize=2)
def _first_stage_run(spec: str, dataset: str, data_dir: str | None, split: str, depth: int, qkey: tuple):
    from ...search.registry import build_retriever

    ds = _load(dataset, data_dir, split)
    retriever = build_retriever(spec)
    retriever.index(ds.corpus)
    return retriever.search({q: ds.queries[q] for q in qkey}, depth)


def rerank_eval(cfg: TrainConfig, scorer) -> dict[str, float]:
    """Re-score ``cfg.eval.first_stage``'s top ``rerank_depth`` (computed once, then cached)."""
    from ...search.rerank import rerank_run

    ds = eval_split(cfg)
    first = _first_stage_run(cfg.eval.first_stage, cfg.dataset, cfg.data_dir, cfg.eval.split,
                             cfg.eval.rerank_depth, tuple(sorted(ds.queries)))
    return score_run(cfg, ds, rerank_run(first, ds.queries, ds.corpus, scorer, cfg.eval.rerank_depth))
