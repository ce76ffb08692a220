"""Training examples (the mine job's JSONL) -> deterministic per-rank micro-batches.

Data order is a pure function of (seed, epoch, micro-batch index, rank), so a run restored
from a checkpoint that stores ``(epoch, micro_step)`` sees exactly the batches it would have
seen without the failure, and a W-worker run sees, per micro-batch, the same global batch
(rank r holds rows ``r*B:(r+1)*B``) as a single process with batch ``W*B``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Collection

import numpy as np

from ..data.jsonl import read_jsonl
from ..errors import DataError


@dataclass(frozen=True)
class Example:
    query_id: str | None  # None when the line has none
    query: str
    positives: tuple[str, ...]
    negatives: tuple[str, ...]  # best-ranked first
    teacher: dict[str, float] | None  # doc id -> teacher score, when the miner had a teacher
    cot: str | None = None  # a reasoning embedder's teacher chain of thought (the cot job's examples)


@dataclass(frozen=True)
class Group:
    """One query's share of a micro-batch: its positive first, then negatives."""
    query: str
    docs: tuple[str, ...]  # texts, len == group_size
    teacher: tuple[float, ...] | None
    cot: str | None = None
    candidates: tuple[str, ...] = ()  # texts scored but not trained on (LREM's reward pool)


def load_examples(path: str | Path, corpus_ids: set[str], need_negatives: bool,
                  need_teacher: bool) -> list[Example]:
    """Read and check every line before training starts; errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"training examples not found: {path} (run `rayrag mine` first)")
    out: list[Example] = []
    for lineno, obj in read_jsonl(path):
        where = f"{path}:{lineno}"
        query = obj.get("query")
        if not isinstance(query, str) or not query.strip():
            raise DataError(f"{where}: 'query' must be a non-empty string")
        pos, neg = _docs(obj, "positives", where), _docs(obj, "negatives", where)
        if not pos:
            raise DataError(f"{where}: no positives")
        for d in (*pos, *neg):
            if d["id"] not in corpus_ids:
                raise DataError(f"{where}: document {d['id']!r} is not in the corpus")
        teacher = None
        if need_teacher:
            missing = [d["id"] for d in (*pos, *neg) if not isinstance(d.get("teacher_score"), (int, float))]
            if missing:
                raise DataError(f"{where}: no teacher_score for {missing[:3]}; mine with a teacher "
                                f"(rayrag mine teacher=...) for distillation objectives")
            teacher = {d["id"]: float(d["teacher_score"]) for d in (*pos, *neg)}
        if need_negatives and not neg:
            continue  # no negative to contrast with: skipped
        cot = obj.get("cot")
        if cot is not None and not isinstance(cot, str):
            raise DataError(f"{where}: 'cot' must be a string (the keywords, comma-separated)")
        qid = obj.get("query_id")
        out.append(Example(None if qid is None else str(qid), query, tuple(d["id"] for d in pos),
                           tuple(d["id"] for d in neg), teacher, cot))
    if not out:
        raise DataError(f"{path}: no usable training examples")
    return out


def drop_held_out(examples: list[Example], held: Collection[str], path: str | Path,
                  split: str) -> tuple[list[Example], int]:
    """Examples of queries outside ``held`` (a split's query ids, e.g. dev) and how many were dropped."""
    if held and any(ex.query_id is None for ex in examples):
        raise DataError(f"{path}: examples without 'query_id' cannot be checked against the {split} queries "
                        f"held out of training; add query ids, or set holdout=null to train on every example")
    kept = [ex for ex in examples if ex.query_id not in held]
    if not kept:
        raise DataError(f"{path}: every example is a {split} query, held out of training")
    return kept, len(examples) - len(kept)


def _docs(obj: dict, key: str, where: str) -> list[dict]:
    docs = obj.get(key, [])
    if not isinstance(docs, list) or not all(isinstance(d, dict) and isinstance(d.get("id"), str) for d in docs):
        raise DataError(f"{where}: {key!r} must be a list of objects with a string 'id'")
    return docs


def make_group(ex: Example, index: int, epoch: int, seed: int, group_size: int, from_top: int,
               text: dict[str, str]) -> Group:
    """The positive and negatives for one example in one epoch (seeded: the same on every rank)."""
    rng = np.random.default_rng([seed, epoch, index])
    pos = ex.positives[int(rng.integers(len(ex.positives)))]
    pool = ex.negatives[:from_top]
    n = group_size - 1
    if n and pool:
        negs = list(rng.choice(len(pool), size=n, replace=len(pool) < n))
        neg_ids = [pool[i] for i in negs]
    else:
        neg_ids = []
    ids = [pos, *neg_ids]
    teacher = tuple(ex.teacher[i] for i in ids) if ex.teacher else None
    return Group(ex.query, tuple(text[i] for i in ids), teacher, ex.cot)


@dataclass(frozen=True)
class BatchPlan:
    """How an epoch splits into micro-batches and optimizer steps for ``world`` workers."""
    num_examples: int
    batch_size: int  # per worker
    world: int
    grad_accum: int

    @property
    def micro_per_epoch(self) -> int:
        # Whole optimizer steps only, so every step sees the same number of examples.
        full = self.num_examples // (self.batch_size * self.world)
        return full - full % self.grad_accum

    @property
    def steps_per_epoch(self) -> int:
        return self.micro_per_epoch // self.grad_accum

    def order(self, seed: int, epoch: int) -> np.ndarray:
        return np.random.default_rng([seed, epoch, 7919]).permutation(self.num_examples)

    def indices(self, order: np.ndarray, micro: int, rank: int) -> np.ndarray:
        start = (micro * self.world + rank) * self.batch_size
        return order[start:start + self.batch_size]


def check_plan(plan: BatchPlan) -> None:
    if plan.steps_per_epoch < 1:
        raise DataError(f"{plan.num_examples} examples are fewer than one optimizer step needs "
                        f"(batch_size {plan.batch_size} x workers {plan.world} x grad_accum {plan.grad_accum})")
