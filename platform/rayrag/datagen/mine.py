"""Hard-negative mining: retrieve top-k for training queries, drop positives and likely false negatives.

False-negative filtering follows NV-Retriever's positive-aware mining (Moreira et al., 2024,
"TopK-PercPos"): a candidate scoring above ``max_neg_ratio`` x the (lowest) positive's score
is probably an unlabelled positive and is dropped. An optional teacher (any retriever that can
score documents) adds its score to every example and drops candidates above
``teacher_threshold``; the stored scores feed distillation losses (KL, MarginMSE).

Output: one JSON object per query, ``{"query_id", "query", "positives": [{"id", "score"}],
"negatives": [{"id", "score", "rank"[, "teacher_score"]}]}``, written atomically.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..config import to_dict
from ..errors import ConfigError
from ..io import atomic_open
from ..job import Job
from ..search.options import RetrieverOptions


@dataclass
class MineConfig:
    dataset: str = "scifact"
    split: str = "train"
    data_dir: str | None = None
    output: str = "out/mine/scifact-train.jsonl"
    retriever: str = "bm25"
    depth: int = 100  # candidates retrieved per query
    num_negatives: int = 32  # kept per query, best-ranked first
    max_neg_ratio: float | None = 0.95  # drop candidates scoring > ratio * min positive score
    teacher: str | None = None  # e.g. "minilm"; scores stored as teacher_score
    teacher_threshold: float | None = None  # drop candidates the teacher scores above this
    cpus: float = 2.0
    experiment: str = "rayrag"
    options: RetrieverOptions = field(default_factory=RetrieverOptions)

    def validate(self) -> None:
        from ..search.registry import parse_spec

        parse_spec(self.retriever)
        if self.teacher:
            parse_spec(self.teacher)
        if self.teacher_threshold is not None and not self.teacher:
            raise ConfigError("teacher_threshold needs a teacher")
        if self.depth < 1 or self.num_negatives < 1:
            raise ConfigError("depth and num_negatives must be >= 1")
        if self.max_neg_ratio is not None and not 0 < self.max_neg_ratio <= 1:
            raise ConfigError(f"max_neg_ratio must be in (0, 1], got {self.max_neg_ratio}")
        if self.cpus <= 0:
            raise ConfigError("cpus must be > 0")


def filter_negatives(candidates: list[tuple[str, float]], positives: dict[str, float], num: int,
                     max_neg_ratio: float | None, teacher: dict[str, float] | None = None,
                     teacher_threshold: float | None = None) -> tuple[list[dict], dict[str, int]]:
    """Pure filtering step: candidates (ranked) -> kept negatives and counts of what was dropped."""
    dropped = {"positive": 0, "margin": 0, "teacher": 0}
    limit = max_neg_ratio * min(positives.values()) if max_neg_ratio is not None and positives else None
    kept = []
    for rank, (doc, score) in enumerate(candidates, 1):
        if doc in positives:
            dropped["positive"] += 1
            continue
        if limit is not None and score > limit:
            dropped["margin"] += 1
            continue
        t = teacher.get(doc) if teacher else None
        if teacher_threshold is not None and t is not None and t > teacher_threshold:
            dropped["teacher"] += 1
            continue
        item = {"id": doc, "score": score, "rank": rank}
        if t is not None:
            item["teacher_score"] = t
        kept.append(item)
        if len(kept) == num:
            break
    return kept, dropped


def _mine_task(cfg: MineConfig, corpus: dict, queries: dict, qrels: dict, threads: int):
    import torch
    from tqdm.auto import tqdm

    from ..search.registry import build_retriever

    torch.set_num_threads(threads)
    retriever = build_retriever(cfg.retriever, cfg.options)
    retriever.index(corpus)
    teacher = None
    if cfg.teacher:
        teacher = build_retriever(cfg.teacher, cfg.options)
        teacher.index(corpus)
    run = retriever.search(queries, cfg.depth)
    examples, totals = [], {"positive": 0, "margin": 0, "teacher": 0}
    for qid in tqdm(list(queries), desc="mine", unit="query", mininterval=5):
        pos_ids = [d for d, r in qrels[qid].items() if r > 0]
        pos_scores = dict(zip(pos_ids, retriever.score(queries[qid], pos_ids)))
        cands = run.get(qid, [])
        t_scores = None
        if teacher is not None:
            ids = pos_ids + [d for d, _ in cands]
            t_scores = dict(zip(ids, teacher.score(queries[qid], ids)))
        negs, dropped = filter_negatives(cands, pos_scores, cfg.num_negatives, cfg.max_neg_ratio,
                                         t_scores, cfg.teacher_threshold)
        for k, v in dropped.items():
            totals[k] += v
        positives = [{"id": d, "score": pos_scores[d], **({"teacher_score": t_scores[d]} if t_scores else {})}
                     for d in pos_ids]
        examples.append({"query_id": qid, "query": queries[qid], "positives": positives, "negatives": negs})
    return examples, totals


def run_mine(cfg: MineConfig) -> dict:
    import ray

    from .. import tracking
    from ..data import dataset_dir, load_beir
    from ..ray_utils import init_ray

    ds = load_beir(dataset_dir(cfg.dataset, cfg.data_dir), cfg.split)
    out = Path(cfg.output).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    started = init_ray()
    try:
        with tracking.job_run("mine", to_dict(cfg), dataset=ds.name, experiment=cfg.experiment,
                              tags={"rayrag.split": cfg.split}) as jr:
            t0 = time.perf_counter()
            task = ray.remote(_mine_task).options(num_cpus=cfg.cpus, name="mine")
            examples, dropped = ray.get(task.remote(cfg, ds.corpus, ds.queries, ds.qrels,
                                                    max(1, int(round(cfg.cpus)))))
            with atomic_open(out) as f:
                for ex in examples:
                    f.write(json.dumps(ex) + "\n")
            n_neg = [len(e["negatives"]) for e in examples]
            stats = {"queries": len(examples), "negatives_mean": sum(n_neg) / max(1, len(n_neg)),
                     "queries_without_negatives": sum(n == 0 for n in n_neg),
                     **{f"dropped_{k}": v for k, v in dropped.items()}, "wall_s": time.perf_counter() - t0}
            jr.log_metrics(stats)
            jr.log_artifact(out)
            print(f"[mine] {len(examples)} queries, {stats['negatives_mean']:.1f} negatives each; dropped "
                  f"{dropped['positive']} positives, {dropped['margin']} by margin, {dropped['teacher']} by teacher "
                  f"-> {out}", flush=True)
            return {**stats, "output": str(out), "mlflow_run_id": jr.run_id}
    finally:
        if started:
            ray.shutdown()


JOB = Job(
    name="mine", config=MineConfig, run=run_mine,
    help="mine hard negatives for training queries",
    description="Retrieve top-k for each training query (retriever=<any retriever name>), drop positives and "
                "likely false negatives, and write training examples (JSONL, output=<file>) with their scores.",
    flags=("dataset", "data_dir"))
