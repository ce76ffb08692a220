"""BEIR-format datasets: ``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``.

Loading is all-or-nothing: every file is checked before a dataset is returned, and each
problem is reported with its file and line.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError
from .jsonl import read_jsonl, read_qrels, require_file
from .splits import missing_split, split_source


@dataclass(frozen=True)
class Document:
    title: str
    text: str

    @property
    def full_text(self) -> str:
        """What encoders and BM25 see: BEIR's convention of title, a space, then body."""
        return f"{self.title} {self.text}".strip() if self.title else self.text


@dataclass
class BeirDataset:
    name: str
    split: str
    corpus: dict[str, Document]
    queries: dict[str, str]  # only the queries judged in this split
    qrels: dict[str, dict[str, int]]  # qid -> {docid: relevance}
    path: Path | None = field(default=None, compare=False)

    def __repr__(self) -> str:
        return (f"BeirDataset({self.name!r}, split={self.split!r}, docs={len(self.corpus)}, "
                f"queries={len(self.queries)}, judgments={sum(map(len, self.qrels.values()))})")


def _str_field(obj: dict, key: str, path: Path, lineno: int, required: bool = True) -> str:
    if key not in obj:
        if required:
            raise DataError(f"{path}:{lineno}: missing field {key!r}")
        return ""
    value = obj[key]
    if key == "_id" and isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise DataError(f"{path}:{lineno}: field {key!r} must be a string, got {type(value).__name__}")
    return value


def load_corpus(path: Path) -> dict[str, Document]:
    require_file(path, "corpus file")
    corpus: dict[str, Document] = {}
    seen_at: dict[str, int] = {}
    for lineno, obj in read_jsonl(path):
        doc_id = _str_field(obj, "_id", path, lineno)
        if not doc_id:
            raise DataError(f"{path}:{lineno}: empty document id")
        if doc_id in seen_at:
            raise DataError(f"{path}:{lineno}: duplicate document id {doc_id!r} (first at line {seen_at[doc_id]})")
        seen_at[doc_id] = lineno
        corpus[doc_id] = Document(_str_field(obj, "title", path, lineno, required=False),
                                  _str_field(obj, "text", path, lineno))
    if not corpus:
        raise DataError(f"{path}: corpus is empty")
    return corpus


def load_queries(path: Path) -> dict[str, str]:
    require_file(path, "queries file")
    queries: dict[str, str] = {}
    seen_at: dict[str, int] = {}
    for lineno, obj in read_jsonl(path):
        qid = _str_field(obj, "_id", path, lineno)
        if qid in seen_at:
            raise DataError(f"{path}:{lineno}: duplicate query id {qid!r} (first at line {seen_at[qid]})")
        text = _str_field(obj, "text", path, lineno)
        if not text.strip():
            raise DataError(f"{path}:{lineno}: query {qid!r} has empty text")
        seen_at[qid] = lineno
        queries[qid] = text
    if not queries:
        raise DataError(f"{path}: no queries")
    return queries


def load_qrels(path: Path, queries: dict, corpus: dict) -> dict[str, dict[str, int]]:
    require_file(path, "qrels file")
    qrels: dict[str, dict[str, int]] = {}
    for lineno, qid, docid, rel in read_qrels(path):
        if qid not in queries:
            raise DataError(f"{path}:{lineno}: query id {qid!r} is not in queries.jsonl")
        if docid not in corpus:
            raise DataError(f"{path}:{lineno}: document id {docid!r} is not in corpus.jsonl")
        if docid in qrels.get(qid, {}):
            raise DataError(f"{path}:{lineno}: duplicate judgment for ({qid!r}, {docid!r})")
        qrels.setdefault(qid, {})[docid] = rel
    if not qrels:
        raise DataError(f"{path}: no judgments")
    return qrels


def load_beir(path: str | Path, split: str = "test") -> BeirDataset:
    """Load one split of a BEIR dataset folder. Queries are limited to those judged in the split.

    ``dev``, ``train`` and ``train_all`` of a dataset without ``qrels/dev.tsv`` are carved out of
    ``qrels/train.tsv`` (``data/splits.py``): dev is a fixed subset, train the rest.
    """
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"dataset folder not found: {path}")
    source = split_source(path, split)
    if not source.qrels.is_file():
        raise missing_split(path, split, source)
    corpus = load_corpus(path / "corpus.jsonl")
    all_queries = load_queries(path / "queries.jsonl")
    qrels = source.select(load_qrels(source.qrels, all_queries, corpus))
    if not qrels:
        raise DataError(f"split {split!r} of {path} has no queries")
    queries = {qid: all_queries[qid] for qid in qrels}
    return BeirDataset(path.name, split, corpus, queries, qrels, path)
