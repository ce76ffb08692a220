"""DiSCo training examples: one JSONL line per conversation turn, written by the teacher-scoring job.

    {"query_id": "<conv>::<turn>", "conversation_id": str, "domain": str,
     "query": str,                      # the student's input: data/conversation.py's output
     "docs": [{"id": str, "text": str}, ...],   # the turn's candidates, in a fixed order
     "positives": [str, ...],           # judged relevant ids among docs
     "teacher_scores": {"<teacher>": [float, one per doc]},
     "teacher_queries": {"<teacher>": str}}     # the rewrites (kept in the file, not read here)

Every line is checked before training starts; errors name the file and line. Document texts are
kept once per id (``text``), so examples that share candidates ship each text once.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..data.conversation import AGENT, format_conversation, parse_conversation
from ..data.jsonl import read_jsonl
from ..errors import DataError


@dataclass(frozen=True)
class DiscoExample:
    query_id: str
    conversation_id: str
    domain: str
    query: str  # formatted conversation, fitted to the query length
    doc_ids: tuple[str, ...]  # candidates, file order (after max_candidates)
    positives: tuple[bool, ...]  # per candidate
    teacher: tuple[tuple[float, ...], ...]  # [K][C] scores, K in the config's teacher order


def fit_conversation(text: str, tokenizer, max_tokens: int) -> str:
    """A formatted conversation cut to ``max_tokens`` the formatter's way: whole turns dropped from
    the oldest, so the encoder's own right-truncation never cuts the current turn. A text that fits
    comes back unchanged."""
    turns = parse_conversation(text)
    return format_conversation(turns, tokenizer, max_tokens, with_agent=any(s == AGENT for s, _ in turns))


def _str(obj: dict, key: str, where: str) -> str:
    v = obj.get(key)
    if not isinstance(v, str) or not v.strip():
        raise DataError(f"{where}: {key!r} must be a non-empty string")
    return v


def merged_teacher(scores: np.ndarray, weights: Sequence[float] | None, temperature: float) -> np.ndarray:
    """[K, C] teacher scores -> [C] weighted mean of the teachers' softmaxes (as the loss merges them)."""
    z = scores / temperature
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    w = np.full(len(p), 1.0 / len(p)) if weights is None else np.asarray(weights, float) / sum(weights)
    return w @ p


def _parse(obj: dict, where: str, teachers: Sequence[str], text: dict[str, str]) -> tuple:
    qid, conv, domain, query = (_str(obj, k, where) for k in ("query_id", "conversation_id", "domain", "query"))
    docs = obj.get("docs")
    if not isinstance(docs, list) or not docs or not all(
            isinstance(d, dict) and isinstance(d.get("id"), str) and isinstance(d.get("text"), str) for d in docs):
        raise DataError(f"{where}: 'docs' must be a non-empty list of {{\"id\": str, \"text\": str}}")
    ids = [d["id"] for d in docs]
    if len(set(ids)) != len(ids):
        raise DataError(f"{where}: duplicate document ids in 'docs'")
    for d in docs:
        if text.setdefault(d["id"], d["text"]) != d["text"]:
            raise DataError(f"{where}: document {d['id']!r} has another text than on an earlier line")
    pos = obj.get("positives")
    if not isinstance(pos, list) or not all(isinstance(p, str) for p in pos):
        raise DataError(f"{where}: 'positives' must be a list of document ids")
    if not pos:
        raise DataError(f"{where}: no positives (turns without a judged relevant candidate cannot be trained on)")
    outside = [p for p in pos if p not in set(ids)]
    if outside:
        raise DataError(f"{where}: positives {outside[:3]} are not among 'docs'")
    scores = obj.get("teacher_scores")
    if not isinstance(scores, dict) or not scores:
        raise DataError(f"{where}: no 'teacher_scores' (a mapping teacher -> one score per doc)")
    rows = []
    for t in teachers:
        if t not in scores:
            raise DataError(f"{where}: no scores of teacher {t!r} (it has {sorted(scores)}); set disco.teachers "
                            f"to teachers every line has")
        s = scores[t]
        if not isinstance(s, list) or len(s) != len(ids):
            n = len(s) if isinstance(s, list) else type(s).__name__
            raise DataError(f"{where}: teacher {t!r} has {n} scores for {len(ids)} docs")
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in s):
            raise DataError(f"{where}: teacher {t!r} scores must be finite numbers")
        rows.append([float(x) for x in s])
    return qid, conv, domain, query, ids, set(pos), np.asarray(rows)


def load_disco_examples(path: str | Path, teachers: Sequence[str], weights: Sequence[float] | None = None,
                        temperature: float = 1.0, max_candidates: int | None = None,
                        fit_query: Callable[[str], str] | None = None) -> tuple[list[DiscoExample], dict[str, str]]:
    """-> (examples, doc id -> text). ``max_candidates`` keeps each turn's positives, then the
    candidates the merged teachers like most, in file order; ``fit_query`` maps each query to the
    text the student encodes (dropping the oldest turns of a long conversation)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"DiSCo examples not found: {path} (the teacher-scoring job writes them)")
    out: list[DiscoExample] = []
    text: dict[str, str] = {}
    seen: dict[str, int] = {}
    for lineno, obj in read_jsonl(path):
        where = f"{path}:{lineno}"
        qid, conv, domain, query, ids, pos, scores = _parse(obj, where, teachers, text)
        if qid in seen:
            raise DataError(f"{where}: query_id {qid!r} already on line {seen[qid]}")
        seen[qid] = lineno
        keep = np.arange(len(ids))
        if max_candidates is not None and len(ids) > max_candidates:
            is_pos = np.array([i in pos for i in ids])
            rank = np.argsort(-merged_teacher(scores, weights, temperature), kind="stable")
            order = [*np.flatnonzero(is_pos), *[i for i in rank if not is_pos[i]]]
            keep = np.sort(order[:max(max_candidates, int(is_pos.sum()))])
        if fit_query is not None:
            try:
                query = fit_query(query)
            except ValueError as e:
                raise DataError(f"{where}: 'query' is not a formatted conversation: {e}") from None
        out.append(DiscoExample(qid, conv, domain, query, tuple(ids[i] for i in keep),
                                tuple(ids[i] in pos for i in keep), tuple(tuple(r[keep]) for r in scores)))
    if not out:
        raise DataError(f"{path}: no DiSCo examples")
    return out, text
