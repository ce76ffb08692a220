"""IBM MTRAG conversational retrieval data (files as published in ``mt-rag-benchmark``).

Layout read (under ``<data dir>/mtrag``)::

    mtragun-human/generation_tasks/reference.jsonl     conversations + gold contexts
    mtragun-human/retrieval_tasks/qrels/<domain>.tsv   judged passages per turn
    mtrag-human/retrieval_tasks/<domain>/<domain>_rewrite.jsonl   standalone rewrites

Each task becomes one :class:`Turn`. The passage pool is every passage that appears as a
context anywhere in the file: the full MTRAG corpora are not distributed with it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError
from .jsonl import read_jsonl, read_qrels, require_file

_USER_PREFIX = "|user|:"


@dataclass(frozen=True)
class Turn:
    qid: str  # "<conversation_id><::><turn>", the id the qrels use
    conversation_id: str
    turn: int
    collection: str
    history: tuple[tuple[str, str], ...]  # (speaker, text) before the question
    question: str  # the last user utterance
    rewrite: str | None  # a standalone rewrite of the question, where one is published
    positives: dict[str, int] = field(default_factory=dict)  # passage id -> relevance

    def conversation_text(self, with_agent: bool = True) -> str:
        """History plus question as one string, oldest first (for query encoders)."""
        lines = [f"{s}: {t}" for s, t in self.history if with_agent or s == "user"]
        return "\n".join(lines + [f"user: {self.question}"])


@dataclass
class MtragDataset:
    turns: list[Turn]
    pool: dict[str, str]  # passage id -> text

    def judged(self) -> list[Turn]:
        return [t for t in self.turns if t.positives]


def _load_rewrites(root: Path) -> dict[str, str]:
    rewrites: dict[str, str] = {}
    for path in sorted((root / "mtrag-human" / "retrieval_tasks").glob("*/*_rewrite.jsonl")):
        for lineno, obj in read_jsonl(path):
            if not isinstance(obj.get("_id"), str) or not isinstance(obj.get("text"), str):
                raise DataError(f"{path}:{lineno}: expected string fields '_id' and 'text'")
            text = obj["text"].strip()
            if text.startswith(_USER_PREFIX):
                text = text[len(_USER_PREFIX):].strip()
            rewrites[obj["_id"]] = text
    return rewrites


def _parse_task(obj: dict, path: Path, lineno: int) -> tuple[str, dict]:
    for key in ("task_id", "conversation_id", "turn", "input", "contexts"):
        if key not in obj:
            raise DataError(f"{path}:{lineno}: missing field {key!r}")
    turns = obj["input"]
    if not isinstance(turns, list) or not turns:
        raise DataError(f"{path}:{lineno}: 'input' must be a non-empty list of turns")
    for i, t in enumerate(turns):
        if not isinstance(t, dict) or not isinstance(t.get("speaker"), str) or not isinstance(t.get("text"), str):
            raise DataError(f"{path}:{lineno}: input[{i}] needs string 'speaker' and 'text'")
    if turns[-1]["speaker"] != "user":
        raise DataError(f"{path}:{lineno}: the last input turn must be the user's question, "
                        f"got speaker {turns[-1]['speaker']!r}")
    if not isinstance(obj["contexts"], list):
        raise DataError(f"{path}:{lineno}: 'contexts' must be a list")
    try:
        turn_no = int(obj["turn"])
    except (TypeError, ValueError):
        raise DataError(f"{path}:{lineno}: 'turn' must be an integer, got {obj['turn']!r}") from None
    return str(obj["task_id"]), dict(obj, turn=turn_no)


def load_mtrag(root: str | Path) -> MtragDataset:
    """Load every MTRAG task with its history, question, rewrite, positives and the passage pool."""
    root = Path(root)
    ref = require_file(root / "mtragun-human" / "generation_tasks" / "reference.jsonl", "MTRAG reference file")
    tasks: dict[str, dict] = {}
    pool: dict[str, str] = {}
    for lineno, obj in read_jsonl(ref):
        task_id, task = _parse_task(obj, ref, lineno)
        if task_id in tasks:
            raise DataError(f"{ref}:{lineno}: duplicate task_id {task_id!r}")
        for j, c in enumerate(task["contexts"]):
            if not isinstance(c, dict) or not isinstance(c.get("document_id"), str) or not isinstance(c.get("text"), str):
                raise DataError(f"{ref}:{lineno}: contexts[{j}] needs string 'document_id' and 'text'")
            pool.setdefault(c["document_id"], c["text"].strip())
        tasks[task_id] = task
    if not tasks:
        raise DataError(f"{ref}: no tasks")

    positives: dict[str, dict[str, int]] = {}
    qrels_dir = root / "mtragun-human" / "retrieval_tasks" / "qrels"
    qrels_files = sorted(qrels_dir.glob("*.tsv"))
    if not qrels_files:
        raise DataError(f"no qrels files in {qrels_dir}")
    for path in qrels_files:
        for lineno, qid, docid, rel in read_qrels(path):
            if qid not in tasks:
                raise DataError(f"{path}:{lineno}: turn {qid!r} is not a task in {ref.name}")
            if docid not in pool:
                raise DataError(f"{path}:{lineno}: passage {docid!r} has no text in {ref.name}")
            positives.setdefault(qid, {})[docid] = rel

    rewrites = _load_rewrites(root)
    turns = []
    for task_id, task in tasks.items():
        inp = task["input"]
        turns.append(Turn(
            qid=task_id,
            conversation_id=str(task["conversation_id"]),
            turn=task["turn"],
            collection=str(task.get("Collection", "")),
            history=tuple((t["speaker"], t["text"].strip()) for t in inp[:-1]),
            question=inp[-1]["text"].strip(),
            rewrite=rewrites.get(task_id),
            positives=positives.get(task_id, {}),
        ))
    return MtragDataset(turns, pool)
