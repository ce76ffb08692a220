"""The evaluate job: run retrievers on a BEIR split inside Ray, score them, record everything.

Each retriever indexes the corpus and answers the queries in its own Ray task, so on a
cluster they run in parallel on different nodes. The driver only loads and validates the
data (before anything starts), scores runs and writes outputs, so a bad dataset fails in
seconds and a crash never leaves a partial ``result.json``.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from ..assets import resolve_model
from ..config import to_dict
from ..data.beir import load_beir
from ..data.locate import dataset_dir
from ..search.options import RetrieverOptions
from ..search.registry import Spec, parse_spec
from .config import EvaluateConfig
from .metrics import evaluate
from .trec import write_run


def _retrieve(spec: str, options: RetrieverOptions, corpus: dict, queries: dict, depth: int, threads: int):
    """Runs inside a Ray task: index, search, and return the run with timings."""
    import torch

    from ..search.registry import build_retriever

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    retriever = build_retriever(spec, options)
    retriever.index(corpus)
    t1 = time.perf_counter()
    run = retriever.search(queries, depth)
    t2 = time.perf_counter()
    return run, {"index_s": t1 - t0, "search_s": t2 - t1}


def _check_indexes(spec: Spec) -> None:
    if spec.kind == "index":
        from ..index.store import load_index

        load_index(spec.arg)  # checksums, sizes, dimension
    for p in spec.parts:
        _check_indexes(p)


def _atomic_json(path: Path, data: dict) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def run_evaluate(cfg: EvaluateConfig) -> dict:
    """Evaluate ``cfg.retrievers`` and return the result dict also written to ``result.json``."""
    import ray

    from .. import tracking
    from ..ray_utils import init_ray
    from .report import plot_recall_curves

    dataset = load_beir(dataset_dir(cfg.dataset, cfg.data_dir), cfg.split)
    for spec in cfg.retrievers:  # fail on a bad model or index now, not inside a Ray task later
        parsed = parse_spec(spec)
        for model in parsed.models():
            resolve_model(model)
        _check_indexes(parsed)
    out = Path(cfg.output_dir).resolve()
    (out / "runs").mkdir(parents=True, exist_ok=True)
    started = init_ray(cfg.num_cpus)
    try:
        remote = ray.remote(_retrieve)
        corpus_ref, queries_ref = ray.put(dataset.corpus), ray.put(dataset.queries)
        threads = max(1, int(round(cfg.cpus_per_retriever)))
        pending = {
            remote.options(num_cpus=cfg.cpus_per_retriever, name=f"retrieve:{spec}").remote(
                spec, cfg.options, corpus_ref, queries_ref, cfg.depth, threads): spec
            for spec in cfg.retrievers
        }
        curve_ks = [k for k in (1, 3, 5, 10, 20, 50, 100, 200, 500, 1000) if k <= cfg.depth]
        metrics: dict[str, dict[str, float]] = {}
        curves: dict[str, dict[int, float]] = {}
        timings: dict[str, dict[str, float]] = {}
        with tracking.job_run("evaluate", to_dict(cfg), dataset=dataset.name, experiment=cfg.experiment,
                              tags={"rayrag.split": cfg.split}) as jr:
            while pending:
                [done], _ = ray.wait(list(pending), num_returns=1)
                spec = pending.pop(done)
                run, timing = ray.get(done)
                metrics[spec] = evaluate(dataset.qrels, run, cfg.metrics)
                curve = evaluate(dataset.qrels, run, [f"recall@{k}" for k in curve_ks])
                curves[spec] = {k: curve[f"recall@{k}"] for k in curve_ks}
                timings[spec] = timing
                write_run(out / "runs" / f"{_file_safe(spec)}.trec", run, tag=_file_safe(spec))
                jr.log_metrics({f"{spec}/{m}": v for m, v in metrics[spec].items()})
                jr.log_metrics({f"{spec}/{k}": v for k, v in timing.items()})
                print(f"[evaluate] {spec}: " + "  ".join(f"{m}={v:.4f}" for m, v in metrics[spec].items()),
                      flush=True)
            result = {
                "dataset": dataset.name,
                "split": cfg.split,
                "metrics": {s: metrics[s] for s in cfg.retrievers},
                "num_queries": len(dataset.queries),
                "num_docs": len(dataset.corpus),
                "timings_s": {s: timings[s] for s in cfg.retrievers},
                "mlflow_run_id": jr.run_id,
                "tracking_uri": tracking.tracking_uri(),
            }
            _atomic_json(out / "result.json", result)
            fig = plot_recall_curves(curves, title=f"{dataset.name} {cfg.split}: recall@k")
            fig.savefig(out / "recall_at_k.png", dpi=120, bbox_inches="tight")
            jr.log_figure(fig, "plots/recall_at_k.png")
            jr.log_artifact(out / "result.json")
            jr.log_artifact(out / "runs", "runs")
        return result
    finally:
        if started:
            ray.shutdown()


def _file_safe(spec: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in spec)
