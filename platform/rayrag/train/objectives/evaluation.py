"""End-of-epoch evaluation helpers shared by the objectives (rank 0 only).

The evaluation split arrives with the training data (``Objective.eval_data``, loaded and
checked by the driver), so workers never read the data folder.
"""
from __future__ import annotations

from ...data.beir import BeirDataset
from ..config import TrainConfig


def eval_split(cfg: TrainConfig, ds: BeirDataset | None) -> BeirDataset:
    if ds is None:
        raise RuntimeError("no evaluation data was shipped to the worker (eval.split is unset)")
    if cfg.eval.max_queries:
        keep = sorted(ds.queries)[: cfg.eval.max_queries]
        ds = BeirDataset(ds.name, ds.split, ds.corpus, {q: ds.queries[q] for q in keep},
                         {q: ds.qrels[q] for q in keep}, ds.path)
    return ds


def score_run(cfg: TrainConfig, ds: BeirDataset, run) -> dict[str, float]:
    from ...eval.metrics import evaluate

    metrics = sorted({cfg.eval.metric, "recall@100"})
    return {f"eval/{m}": v for m, v in evaluate(ds.qrels, run, metrics).items()}


_FIRST_STAGE: dict[tuple, dict] = {}


def rerank_eval(cfg: TrainConfig, full: BeirDataset | None, scorer) -> dict[str, float]:
    """Re-score ``cfg.eval.first_stage``'s top ``rerank_depth`` (retrieved once per worker)."""
    from ...search.rerank import rerank_run

    ds = eval_split(cfg, full)
    key = (cfg.eval.first_stage, ds.name, ds.split, cfg.eval.rerank_depth, tuple(sorted(ds.queries)))
    if key not in _FIRST_STAGE:
        from ...search.registry import build_retriever

        retriever = build_retriever(cfg.eval.first_stage)
        retriever.index(ds.corpus)
        _FIRST_STAGE[key] = retriever.search(ds.queries, cfg.eval.rerank_depth)
    return score_run(cfg, ds, rerank_run(_FIRST_STAGE[key], ds.queries, ds.corpus, scorer, cfg.eval.rerank_depth))
