"""Strict JSONL / TSV readers whose errors name the file and line."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Iterator

from ..errors import DataError


def require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise DataError(f"{what} not found: {path}")
    return path


def read_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, object)``; blank lines are skipped, anything else must be an object."""
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{lineno}: malformed JSON ({e.msg})") from None
            if not isinstance(obj, dict):
                raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
            yield lineno, obj


def read_qrels(path: Path) -> Iterator[tuple[int, str, str, int]]:
    """BEIR qrels TSV (header ``query-id corpus-id score``): yield ``(line, qid, docid, score)``."""
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="\t")
        for lineno, row in enumerate(reader, 1):
            if not row or not "".join(row).strip():
                continue
            if lineno == 1 and row[0].strip().lower() in ("query-id", "query_id", "qid"):
                continue
            if len(row) != 3:
                raise DataError(f"{path}:{lineno}: expected 3 tab-separated columns "
                                f"(query-id, corpus-id, score), got {len(row)}")
            qid, docid, score = (c.strip() for c in row)
            try:
                rel = int(score)
            except ValueError:
                raise DataError(f"{path}:{lineno}: relevance score {score!r} is not an integer") from None
            yield lineno, qid, docid, rel
