"""Evaluate retrievers on the MTRAG human retrieval tasks: per domain, in three query forms.

Query forms, all made by the one conversation formatter (``data/conversation.py``), so they
are MTRAG's published ``*_lastturn`` / ``*_questions`` / ``*_rewrite`` texts:

  last_turn   the current user turn alone
  history     every user turn so far, oldest first, cut from the oldest turn to fit
              ``history_max_tokens`` of ``history_tokenizer`` (the student's input)
  rewrite     the human standalone rewrite (the first teacher)

Each domain has its own pool, searched only by that domain's turns. One Ray task per
(retriever, domain) indexes the pool once and answers every form, as the evaluate job does
(``eval/job.py``): the driver loads and validates everything first, so bad input fails before
Ray starts, and it alone scores runs and writes outputs.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError
from ..search.options import RetrieverOptions
from .metrics import parse_metric

FORMS = ("last_turn", "history", "rewrite")


@dataclass
class MtragEvalConfig:
    dataset: str = "mtrag"  # folder under the data dir (or a path) holding mtrag-human/ and pool/
    data_dir: str | None = None  # default: $RAYRAG_DATA_DIR
    output_dir: str = "out/mtrag-eval"
    retrievers: list[str] = field(default_factory=lambda: ["bm25", "splade-tiny"])  # "label=spec" allowed
    query_forms: list[str] = field(default_factory=lambda: list(FORMS))
    domains: list[str] = field(default_factory=lambda: ["clapnq", "cloud", "fiqa", "govt"])
    max_conversations: int | None = None  # per domain, first N by id: quick checks only, not results
    depth: int = 100
    metrics: list[str] = field(default_factory=lambda: ["recall@10", "recall@100", "ndcg@10", "mrr@10"])
    history_tokenizer: str = "splade-tiny"  # whose tokens the history budget counts
    history_max_tokens: int = 256  # SPLADE's max_length: the encoder never cuts the current turn
    significance_metric: str = "ndcg@10"  # paired tests between query forms, per retriever
    permutations: int = 10_000
    seed: int = 0
    cpus_per_task: float = 1.0  # Ray task size; torch threads follow it
    num_cpus: int | None = None  # local Ray only
    experiment: str = "rayrag"
    options: RetrieverOptions = field(default_factory=RetrieverOptions)

    def validate(self) -> None:
        from ..data.mtrag import DOMAINS
        from ..search.registry import parse_spec, split_label

        if not self.retrievers:
            raise ConfigError("retrievers: give at least one retriever")
        labels = [split_label(r)[0] for r in self.retrievers]
        if len(set(labels)) != len(labels):
            raise ConfigError(f"retrievers: duplicate names in {labels}")
        specs = [parse_spec(split_label(r)[1]) for r in self.retrievers]
        for name, allowed, given in (("query_forms", FORMS, self.query_forms), ("domains", DOMAINS, self.domains)):
            bad = [x for x in given if x not in allowed]
            if bad or not given or len(set(given)) != len(given):
                raise ConfigError(f"{name}: give distinct values from {list(allowed)}, got {given}")
        if self.depth < 1:
            raise ConfigError(f"depth must be >= 1, got {self.depth}")
        for m in self.metrics + [self.significance_metric]:
            try:
                _, k = parse_metric(m)
            except ValueError as e:
                raise ConfigError(f"metrics: {e}") from None
            if k is not None and k > self.depth:
                raise ConfigError(f"metrics: {m} needs depth >= {k}, but depth is {self.depth}")
        if self.significance_metric not in self.metrics:
            raise ConfigError(f"significance_metric {self.significance_metric!r} must be one of metrics {self.metrics}")
        if self.history_max_tokens < 8:
            raise ConfigError(f"history_max_tokens must be >= 8, got {self.history_max_tokens}")
        if any(s.kind == "splade" for s in specs) and self.history_max_tokens > self.options.sparse_max_length:
            raise ConfigError(f"history_max_tokens ({self.history_max_tokens}) exceeds options.sparse_max_length "
                              f"({self.options.sparse_max_length}): SPLADE would cut the current turn off the end")
        if self.max_conversations is not None and self.max_conversations < 1:
            raise ConfigError(f"max_conversations must be >= 1 or unset, got {self.max_conversations}")
        if self.permutations < 1 or self.cpus_per_task <= 0 or not self.output_dir:
            raise ConfigError("permutations must be >= 1, cpus_per_task > 0 and output_dir non-empty")


def _retrieve(spec: str, options: RetrieverOptions, label: str, domain: str, pool: dict,
              queries: dict[str, dict[str, str]], depth: int, threads: int) -> dict:
    """Inside a Ray task: index one domain's pool, answer every query form.

    Returns runs per form, non-zero query terms per turn for SPLADE (how much a form expands
    the query, the cost side of the comparison), and timings.
    """
    import numpy as np
    import torch

    from ..search.registry import build_retriever
    from ..search.sparse import SpladeRetriever

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    retriever = build_retriever(spec, options)
    retriever.index(pool)
    timings = {"index_s": time.perf_counter() - t0}
    runs, terms = {}, {}
    for form, qs in queries.items():
        t1 = time.perf_counter()
        runs[form] = retriever.search(qs, depth)
        timings[f"search_{form}_s"] = time.perf_counter() - t1
        if isinstance(retriever, SpladeRetriever):
            qids = list(qs)
            vecs = retriever.encoder.encode([qs[q] for q in qids], progress=False)
            terms[form] = dict(zip(qids, np.diff(vecs.indptr).tolist()))
    return {"label": label, "domain": domain, "runs": runs, "terms": terms, "timings": timings}


def run_mtrag_eval(cfg: MtragEvalConfig) -> dict:
    """Evaluate ``cfg.retrievers`` on every query form; returns the dict written to ``result.json``."""
    import ray

    from .. import tracking
    from ..config import to_dict
    from ..encode.store import atomic_write_json
    from ..ray_utils import init_ray
    from ..search.registry import split_label
    from .mtrag_inputs import load_inputs
    from .mtrag_report import flat_metrics, format_table, summarize, write_outputs

    cfg.validate()
    inputs = load_inputs(cfg)  # every file read and checked, every model resolved: Ray not started yet
    entries = [split_label(e) for e in cfg.retrievers]
    out = Path(cfg.output_dir).resolve()
    (out / "runs").mkdir(parents=True, exist_ok=True)
    started = init_ray(cfg.num_cpus)
    try:
        remote = ray.remote(_retrieve)
        threads = max(1, int(round(cfg.cpus_per_task)))
        pools = {d: ray.put(p) for d, p in inputs.pools.items()}
        pending = {remote.options(num_cpus=cfg.cpus_per_task, name=f"mtrag:{label}:{d}").remote(
            spec, cfg.options, label, d, pools[d], inputs.queries[d], cfg.depth, threads): (label, d)
            for label, spec in entries for d in inputs.pools}
        parts = []
        with tracking.job_run("mtrag-eval", to_dict(cfg), dataset="mtrag-human", experiment=cfg.experiment,
                              tags={"rayrag.split": "dev"}) as jr:
            while pending:
                [done], _ = ray.wait(list(pending), num_returns=1)
                label, domain = pending.pop(done)
                parts.append(ray.get(done))
                print(f"[mtrag-eval] {label} / {domain}: done ({len(pending)} left)", flush=True)
            result = summarize(cfg, entries, inputs, parts)
            result.update(mlflow_run_id=jr.run_id, tracking_uri=tracking.tracking_uri())
            write_outputs(out, result, inputs)
            jr.log_metrics(flat_metrics(result))
            atomic_write_json(out / "result.json", result, sort_keys=False)
            jr.log_artifact(out / "result.json")
            jr.log_artifact(out / "per_turn.jsonl")
            jr.log_artifact(out / "runs", "runs")
        print(format_table(result), flush=True)
        return result
    finally:
        if started:
            ray.shutdown()
