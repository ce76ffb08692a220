"""The evaluate job: run retrievers on a BEIR split inside Ray, score them, record everything.

Each retriever indexes the corpus and answers the queries in its own Ray task, so on a
cluster they run in parallel on different nodes. A fusion shares its task with the retrievers
it fuses (``task_groups``), so each of its components indexes the corpus once. The driver only
loads and validates the data (before anything starts), scores runs and writes outputs, so a bad
dataset fails in seconds and a crash never leaves a partial ``result.json``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from ..assets import resolve_model
from ..config import to_dict
from ..data.beir import load_beir
from ..data.locate import dataset_dir
from ..errors import ConfigError
from ..io import atomic_path, atomic_write_json
from ..job import Job
from ..search.options import RetrieverOptions
from ..search.registry import Spec, parse_spec, split_label, unique_labels, validate_spec
from .metrics import check_metrics, evaluate, evaluate_scored
from .significance import paired_test_by_query, parse_pair_list
from .trec import write_run

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
    # label -> options for that retriever alone, over ``options``: one job can evaluate a model
    # under several settings on the same queries, e.g. LREM's arms and CoT ablations
    # ({direct: {reasoning: "off"}, empty: {cot: empty}} with direct=index:..., empty=index:...)
    retriever_options: dict[str, dict] = field(default_factory=dict)
    # "a vs b" (labels, rerank rows too): a paired randomization test on every metric, each query
    # its own unit (eval/significance.py); mean difference and two-sided p go into result.json
    pairs: list[str] = field(default_factory=list)
    permutations: int = 10_000
    seed: int = 0

    def labels(self) -> list[str]:
        """Every row the job reports: each retriever, then its rerank rows."""
        base = [split_label(r)[0] for r in self.retrievers]
        if not self.rerank:
            return base
        return [x for lab in base for x in [lab, lab + RERANK_SUFFIX] + [
            interpolated_label(lab, w) for w in self.rerank_interpolate]]

    def options_for(self, label: str) -> RetrieverOptions:
        from ..config import from_dict, merge

        if label not in self.retriever_options:
            return self.options
        return from_dict(RetrieverOptions, merge(to_dict(self.options), self.retriever_options[label]),
                         prefix=f"retriever_options.{label}.")

    def validate(self) -> None:
        from ..search.rerank import check_interpolation_weight

        labels = unique_labels(self.retrievers)
        for spec in self.retrievers:
            validate_spec(spec)
        check_metrics(self.metrics, self.depth)
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
        odd = [k for k in self.retriever_options if not isinstance(k, str)]
        if odd:
            raise ConfigError(f"retriever_options: labels must be strings, got {odd} (YAML reads on, off, yes "
                              f"and no as booleans: quote such a label)")
        unknown = sorted(set(self.retriever_options) - set(labels))
        if unknown:
            raise ConfigError(f"retriever_options: no retriever labelled {unknown}; labels: {labels}")
        for label in self.retriever_options:
            if not isinstance(self.retriever_options[label], dict):
                raise ConfigError(f"retriever_options.{label}: expected a mapping of options")
            self.options_for(label)  # unknown keys and bad values fail here
        try:
            parse_pair_list(self.pairs, self.labels())
        except ValueError as e:
            raise ConfigError(f"pairs: {e}") from None
        if self.permutations < 1:
            raise ConfigError(f"permutations must be >= 1, got {self.permutations}")


def _retrieve(entries: list[tuple[str, str, RetrieverOptions]], corpus: dict, queries: dict, depth: int,
              threads: int, rerank: dict | None = None) -> dict:
    """Runs inside a Ray task, for one group of ``(label, spec, options)`` (``task_groups``): build
    each retriever, index each distinct component once, search (and rerank). Returns
    ``{"rows": {label: (run, timings, stats)}, "indexed": [component names]}`` (stats: what a
    retriever reports of its own, e.g. a reasoning embedder's format-valid rate)."""
    import torch

    from ..search.fusion import FusionRetriever, components
    from ..search.registry import FUSIONS, build_retriever, leaf_key, parse_spec

    torch.set_num_threads(threads)
    shared: dict = {}
    alone: set = set()
    built = []
    for label, spec, options in entries:
        parsed = parse_spec(spec)
        key = leaf_key(parsed, options) if parsed.kind not in FUSIONS else None
        # two rows of the same retriever and options stay two objects: stats count per object
        built.append((label, build_retriever(spec, options, None if key in alone else shared)))
        if key is not None:
            alone.add(key)
    index_s: dict[int, float] = {}
    indexed = []
    for _, retriever in built:
        for part in components(retriever):
            if id(part) not in index_s:
                t0 = time.perf_counter()
                part.index(corpus)
                index_s[id(part)] = time.perf_counter() - t0
                indexed.append(part.name)
    if rerank:  # one reranker for the group's rows
        from ..models.reranker import load_reranker
        from ..search.rerank import interpolate, rerank_run

        reranker = load_reranker(rerank["model"], batch_size=rerank["batch_size"])
    rows = {}
    # rows of one retriever first: their stats are read before a fusion searches the same object
    for label, retriever in sorted(built, key=lambda b: isinstance(b[1], FusionRetriever)):
        t1 = time.perf_counter()
        run = retriever.search(queries, depth)
        t2 = time.perf_counter()
        stats = {k: float(v) for k, v in (getattr(retriever, "stats", None) or {}).items()}
        own_index_s = sum(index_s[id(part)] for part in components(retriever))
        rows[label] = (run, {"index_s": own_index_s, "search_s": t2 - t1}, stats)
        if rerank:
            reranked = rerank_run(run, queries, corpus, reranker.score, rerank["depth"])
            rows[f"{label}{RERANK_SUFFIX}"] = (reranked, {"rerank_s": time.perf_counter() - t2}, {})
            for w in rerank["interpolate"]:
                rows[interpolated_label(label, w)] = (interpolate(run, reranked, rerank["depth"], w), {}, {})
    return {"rows": rows, "indexed": indexed}


def task_groups(entries: list[tuple[str, str]], options: list[RetrieverOptions]) -> list[list[int]]:
    """Which entries (``(label, spec)``, with their options) run in one Ray task: a fusion and
    every entry it shares a component with (same spec and options), transitively, so the task
    indexes that component once (for ``dense:<model>`` that is encoding the corpus). Every other
    entry has a task of its own, as before, and can run on another node. Lists of entry indexes,
    in the order the entries came."""
    from ..search.registry import FUSIONS, leaf_key

    parsed = [parse_spec(spec) for _, spec in entries]
    keys = [{leaf_key(leaf, o) for leaf in p.leaves()} for p, o in zip(parsed, options)]
    group = list(range(len(entries)))

    def root(i: int) -> int:
        while group[i] != i:
            i = group[i]
        return i

    for i, p in enumerate(parsed):
        if p.kind not in FUSIONS:
            continue
        for j in range(len(entries)):
            if j != i and keys[i] & keys[j]:
                group[root(j)] = root(i)
    out: dict[int, list[int]] = {}
    for i in range(len(entries)):
        out.setdefault(root(i), []).append(i)
    return sorted(out.values())


RERANK_SUFFIX = ">>rerank"


def interpolated_label(label: str, weight: float) -> str:
    return f"{label}{RERANK_SUFFIX}+first@{weight:g}"


def _check_indexes(spec: Spec) -> None:
    if spec.kind == "index":
        from ..index.store import check_index

        check_index(spec.arg)
    for p in spec.parts:
        _check_indexes(p)


def run_evaluate(cfg: EvaluateConfig) -> dict:
    """Evaluate ``cfg.retrievers`` and return the result dict also written to ``result.json``."""
    import ray

    from .. import tracking
    from ..ray_utils import init_ray
    from .report import plot_recall_curves

    dataset = load_beir(dataset_dir(cfg.dataset, cfg.data_dir), cfg.split)
    entries = [split_label(e) for e in cfg.retrievers]  # (label, spec)
    for _, spec in entries:  # fail on a bad model or index now, not inside a Ray task later
        parsed = parse_spec(spec)
        for model in parsed.models():
            resolve_model(model)
        _check_indexes(parsed)
    if cfg.rerank:
        from ..models.reranker import reranker_kind

        reranker_kind(resolve_model(cfg.rerank).path)  # a bad reranker fails now
    out = Path(cfg.output_dir).resolve()
    (out / "runs").mkdir(parents=True, exist_ok=True)
    started = init_ray(cfg.num_cpus)
    try:
        remote = ray.remote(_retrieve)
        corpus_ref, queries_ref = ray.put(dataset.corpus), ray.put(dataset.queries)
        threads = max(1, int(round(cfg.cpus_per_retriever)))
        rerank = {"model": cfg.rerank, "depth": cfg.rerank_depth, "batch_size": cfg.rerank_batch_size,
                  "interpolate": list(cfg.rerank_interpolate)} if cfg.rerank else None
        options = [cfg.options_for(label) for label, _ in entries]
        groups = task_groups(entries, options)
        pending = {
            remote.options(num_cpus=cfg.cpus_per_retriever,
                           name="retrieve:" + " & ".join(entries[i][0] for i in group)).remote(
                [(*entries[i], options[i]) for i in group], corpus_ref, queries_ref, cfg.depth, threads, rerank): n
            for n, group in enumerate(groups)
        }
        tasks: list[dict] = [{"retrievers": [entries[i][0] for i in group]} for group in groups]
        labels = cfg.labels()
        curve_ks = [k for k in (1, 3, 5, 10, 20, 50, 100, 200, 500, 1000) if k <= cfg.depth]
        metrics: dict[str, dict[str, float]] = {}
        curves: dict[str, dict[int, float]] = {}
        timings: dict[str, dict[str, float]] = {}
        stats: dict[str, dict[str, float]] = {}
        per_query: dict[str, dict[str, dict[str, float]]] = {}  # label -> qid -> metric
        with tracking.job_run("evaluate", to_dict(cfg), dataset=dataset.name, experiment=cfg.experiment,
                              tags={"rayrag.split": cfg.split}) as jr:
            while pending:
                [done], _ = ray.wait(list(pending), num_returns=1)
                got = ray.get(done)
                tasks[pending.pop(done)]["indexed"] = got["indexed"]
                for label, (run, timing, own) in got["rows"].items():
                    metrics[label], per_query[label] = evaluate_scored(dataset.qrels, run, cfg.metrics)
                    curve = evaluate(dataset.qrels, run, [f"recall@{k}" for k in curve_ks])
                    curves[label] = {k: curve[f"recall@{k}"] for k in curve_ks}
                    timings[label] = timing
                    if own:
                        stats[label] = own
                        jr.log_metrics({f"{label}/{k}": v for k, v in own.items()})
                    write_run(out / "runs" / f"{_file_safe(label)}.trec", run, tag=_file_safe(label))
                    jr.log_metrics({f"{label}/{m}": v for m, v in metrics[label].items()})
                    jr.log_metrics({f"{label}/{k}": v for k, v in timing.items()})
                    print(f"[evaluate] {label}: " + "  ".join(f"{m}={v:.4f}" for m, v in metrics[label].items()),
                          flush=True)
            significance = _significance(cfg, metrics, per_query)
            for pair, by_metric in significance.items():
                jr.log_metrics({_file_safe(f"{pair}/{m}/p"): t["p"] for m, t in by_metric.items()})
            result = {
                "dataset": dataset.name,
                "split": cfg.split,
                "metrics": {label: metrics[label] for label in labels},
                "retrievers": {label: spec for label, spec in entries},
                "reranker": {"model": cfg.rerank, "depth": cfg.rerank_depth,
                             "interpolate": list(cfg.rerank_interpolate)} if cfg.rerank else None,
                "num_queries": len(dataset.queries),
                "num_docs": len(dataset.corpus),
                "timings_s": {label: timings[label] for label in labels},
                # one Ray task each; "indexed": the components it indexed, each once (task_groups)
                "tasks": tasks,
                "retriever_stats": {label: stats[label] for label in labels if label in stats},
                "retriever_options": cfg.retriever_options,
                "significance": significance,
                "mlflow_run_id": jr.run_id,
                "tracking_uri": tracking.tracking_uri(),
            }
            atomic_write_json(out / "result.json", result, sort_keys=False)  # keeps retriever order
            fig = plot_recall_curves(curves, title=f"{dataset.name} {cfg.split}: recall@k")
            with atomic_path(out / "recall_at_k.png") as tmp:
                fig.savefig(tmp, dpi=120, bbox_inches="tight")
            jr.log_figure(fig, "plots/recall_at_k.png")
            jr.log_artifact(out / "result.json")
            jr.log_artifact(out / "runs", "runs")
        return result
    finally:
        if started:
            ray.shutdown()


def _significance(cfg: EvaluateConfig, metrics: dict, per_query: dict) -> dict:
    """"a vs b" -> metric -> {a, b (means), mean_diff, p}: paired randomization test by query."""
    out = {}
    for a, b in parse_pair_list(cfg.pairs, cfg.labels()):
        tests = {}
        for m in cfg.metrics:
            va = {q: v[m] for q, v in per_query[a].items()}
            vb = {q: v[m] for q, v in per_query[b].items()}
            mean_a, mean_b = metrics[a][m], metrics[b][m]
            tests[m] = {"a": mean_a, "b": mean_b, "mean_diff": mean_a - mean_b,
                        "p": paired_test_by_query(va, vb, cfg.permutations, cfg.seed)}
        out[f"{a} vs {b}"] = tests
    return out


def _file_safe(spec: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in spec)


def _summary_of_result(cfg, result: dict) -> str:
    from .report import closing_words, format_significance, format_table

    table = format_table(result)
    tests = format_significance(result)
    return closing_words(f"{table}\n\n{tests}" if tests else table, cfg.output_dir, result)


JOB = Job(
    name="evaluate", config=EvaluateConfig, run=run_evaluate,
    help="evaluate retrievers on a BEIR dataset inside Ray",
    description="Run retrievers on a BEIR split in Ray tasks; write result.json, TREC run files and an "
                "MLflow run. Retrievers: retrievers=[bm25,minilm,hybrid(bm25,minilm),dense:/path/model]; "
                "a reranker (from train-reranker) adds '<retriever>>>rerank' rows: rerank=<model folder>.",
    flags=("dataset", "data_dir", "output_dir"), summary=_summary_of_result)
