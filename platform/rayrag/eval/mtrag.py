"""Evaluate retrievers on MTRAG: per domain, in several query forms (arms), paired by conversation.

Query forms (``eval/mtrag_arms.py``), all made by the one conversation formatter
(``data/conversation.py``), so the plain ones are MTRAG's published ``*_lastturn`` /
``*_questions`` / ``*_rewrite`` texts:

  last_turn                 the current user turn alone
  history                   every user turn so far, oldest first, cut from the oldest turn to fit
                            ``history_max_tokens`` of ``history_tokenizer`` (the student's input)
  rewrite                   the human standalone rewrite (the first teacher)
  rewrite:<name>=<file>     an LLM rewrite (the other teachers)
  student:<name>=<folder>   the DiSCo student's query encoder on the history, over the retriever's
                            SPLADE index (frozen document encoder); ``{fold}``: one model per fold,
                            each turn encoded by the model that never saw its conversation

``turns: mtragun`` evaluates the ``mtragun-human`` turns instead (no rewrites there): the
zero-shot check of the student against last turn and history. Retrievers are built-in names or
specs, or prebuilt per-domain indexes (``index:out/mtrag/index-splade-{domain}``).

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
from ..job import Job
from ..search.options import RetrieverOptions
from .metrics import check_metrics
from .mtrag_arms import PLAIN as FORMS, parse_forms, parse_pairs

TURNS = ("human", "mtragun")


@dataclass
class MtragEvalConfig:
    dataset: str = "mtrag"  # folder under the data dir (or a path) holding mtrag-human/ and pool/
    data_dir: str | None = None  # default: $RAYRAG_DATA_DIR
    output_dir: str = "out/mtrag-eval"
    # "label=spec" allowed; {domain} in a spec is each domain (index:out/mtrag/index-splade-{domain})
    retrievers: list[str] = field(default_factory=lambda: ["bm25", "splade-tiny"])
    query_forms: list[str] = field(default_factory=lambda: list(FORMS))  # see eval/mtrag_arms.py
    turns: str = "human"  # human: mtrag-human (777 turns); mtragun: the mtragun-human check (332)
    with_agent: bool = False  # history and student forms keep agent turns (mtragun has them); as trained
    folds: int | None = 5  # k of the student's cross-validation (data/folds.py), for {fold} folders
    fold_seed: int = 0
    fold_domains: list[str] = field(default_factory=lambda: ["clapnq", "cloud", "fiqa", "govt"])  # dealt in training
    pairs: list[str] | None = None  # "student:disco vs last_turn", ...; None: defaults (mtrag_arms.parse_pairs)
    domains: list[str] = field(default_factory=lambda: ["clapnq", "cloud", "fiqa", "govt"])
    max_conversations: int | None = None  # per domain, first N by id: quick checks only, not results
    depth: int = 100
    metrics: list[str] = field(default_factory=lambda: ["recall@10", "recall@100", "ndcg@10", "mrr@10"])
    history_tokenizer: str = "splade-tiny"  # whose tokens the history budget counts
    history_max_tokens: int = 256  # SPLADE's max_length: the encoder never cuts the current turn
    significance_metrics: list[str] = field(default_factory=lambda: ["recall@10", "ndcg@10"])  # paired tests
    permutations: int = 10_000
    seed: int = 0
    cpus_per_task: float = 1.0  # Ray task size; torch threads follow it
    num_cpus: int | None = None  # local Ray only
    experiment: str = "rayrag"
    options: RetrieverOptions = field(default_factory=RetrieverOptions)

    def validate(self) -> None:
        from ..data.mtrag import DOMAINS
        from ..search.registry import parse_spec, split_label, unique_labels

        unique_labels(self.retrievers)
        specs = [parse_spec(split_label(r)[1].replace("{domain}", "x")) for r in self.retrievers]
        if self.turns not in TURNS:
            raise ConfigError(f"turns must be one of {list(TURNS)}, got {self.turns!r}")
        forms = parse_forms(self.query_forms, self.turns)
        parse_pairs(self.pairs, forms)
        for name, given in (("domains", self.domains), ("fold_domains", self.fold_domains)):
            bad = [x for x in given if x not in DOMAINS]
            if bad or not given or len(set(given)) != len(given):
                raise ConfigError(f"{name}: give distinct values from {list(DOMAINS)}, got {given}")
        if self.folds is not None and self.folds < 2:
            raise ConfigError(f"folds must be >= 2 or unset, got {self.folds}")
        per_fold = [f.name for f in forms if f.per_fold]
        if per_fold and self.folds is None:
            raise ConfigError(f"query_forms: {per_fold} have {{fold}} in their folder; set folds (k) as in training")
        check_metrics(self.metrics + self.significance_metrics, self.depth)
        bad = [m for m in self.significance_metrics if m not in self.metrics]
        if bad:
            raise ConfigError(f"significance_metrics {bad} must be among metrics {self.metrics}")
        if self.history_max_tokens < 8:
            raise ConfigError(f"history_max_tokens must be >= 8, got {self.history_max_tokens}")
        if any(s.kind == "splade" for s in specs) and self.history_max_tokens > self.options.sparse_max_length:
            raise ConfigError(f"history_max_tokens ({self.history_max_tokens}) exceeds options.sparse_max_length "
                              f"({self.options.sparse_max_length}): SPLADE would cut the current turn off the end")
        if self.max_conversations is not None and self.max_conversations < 1:
            raise ConfigError(f"max_conversations must be >= 1 or unset, got {self.max_conversations}")
        if self.permutations < 1 or self.cpus_per_task <= 0 or not self.output_dir:
            raise ConfigError("permutations must be >= 1, cpus_per_task > 0 and output_dir non-empty")


def _sparse_encoder(retriever):
    """The SPLADE query encoder of a SPLADE retriever or a sparse saved index, else None."""
    from ..search.sparse import SpladeRetriever

    loaded = getattr(retriever, "loaded", None)
    if isinstance(retriever, SpladeRetriever) or (loaded is not None and loaded.kind == "sparse"):
        return retriever.encoder
    return None


def _retrieve(spec: str, options: RetrieverOptions, label: str, domain: str, pool: dict,
              queries: dict[str, dict[str, str]], students: dict[str, dict[str, str]], depth: int,
              threads: int) -> dict:
    """Inside a Ray task: index one domain's pool, answer every query form.

    A student form swaps the retriever's query encoder for the fold's student model and searches
    the same index (the documents stay encoded by the frozen SPLADE). Returns runs per form,
    non-zero query terms per turn for SPLADE (how much a form expands the query, the cost side
    of the comparison), and timings.
    """
    import numpy as np
    import torch

    from ..models.sparse import SpladeEncoder
    from ..search.registry import build_retriever

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    retriever = build_retriever(spec, options)
    retriever.index(pool)
    own = _sparse_encoder(retriever)
    timings = {"index_s": time.perf_counter() - t0}
    runs, terms = {}, {}
    for form, qs in queries.items():
        t1 = time.perf_counter()
        # (encoder, qids): the retriever's own for every turn, or one student model per fold
        groups = [(own, list(qs))] if form not in students else [
            (SpladeEncoder(folder, max_length=own.max_length), [q for q in qs if students[form][q] == folder])
            for folder in sorted(set(students[form].values()))]
        runs[form] = {}
        for encoder, qids in groups:
            if encoder is not None:
                retriever.encoder = encoder
            runs[form].update(retriever.search({q: qs[q] for q in qids}, depth))
            if encoder is not None:
                vecs = encoder.encode([qs[q] for q in qids], progress=False)
                terms.setdefault(form, {}).update(zip(qids, np.diff(vecs.indptr).tolist()))
        if own is not None:
            retriever.encoder = own
        timings[f"search_{form}_s"] = time.perf_counter() - t1
    return {"label": label, "domain": domain, "runs": runs, "terms": terms, "timings": timings}


def run_mtrag_eval(cfg: MtragEvalConfig) -> dict:
    """Evaluate ``cfg.retrievers`` on every query form; returns the dict written to ``result.json``."""
    import ray

    from .. import tracking
    from ..config import to_dict
    from ..io import atomic_write_json
    from ..ray_utils import init_ray
    from ..search.registry import split_label
    from .mtrag_inputs import load_inputs
    from .mtrag_report import flat_metrics, summarize, write_outputs

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
            spec.replace("{domain}", d), cfg.options, label, d, pools[d], inputs.forms_for(label, d),
            inputs.students, cfg.depth, threads): (label, d) for label, spec in entries for d in inputs.pools}
        parts = []
        with tracking.job_run("mtrag-eval", to_dict(cfg), dataset=inputs.dataset, experiment=cfg.experiment,
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
        return result
    finally:
        if started:
            ray.shutdown()


def _summary_of_result(cfg, result: dict) -> str:
    from .mtrag_report import format_table
    from .report import closing_words

    return closing_words(format_table(result), cfg.output_dir, result)


JOB = Job(
    name="evaluate-mtrag", config=MtragEvalConfig, run=run_mtrag_eval,
    help="evaluate retrievers on MTRAG per domain: last turn, history, rewrites, DiSCo students",
    description="Run retrievers on the MTRAG human turns (or turns=mtragun) per domain pool, in query forms "
                "query_forms=[last_turn,history,rewrite,rewrite:<name>=<file>,student:<name>=<folder with {fold}>]; "
                "Recall@10/100, nDCG@10, MRR@10, SPLADE query terms, per domain and overall; paired "
                "randomization tests by conversation between forms; result.json, per_turn.jsonl, TREC runs, MLflow.",
    flags=("data_dir", "output_dir"), summary=_summary_of_result)
