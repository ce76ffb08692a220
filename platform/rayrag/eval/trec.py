"""TREC run files: ``qid Q0 docid rank score tag``, one line per retrieved document."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

from ..errors import DataError
from ..io import atomic_open


def write_run(path: str | Path, run: Mapping[str, list[tuple[str, float]]], tag: str) -> Path:
    """Write atomically (temp file + rename) so a crash never leaves a truncated run file."""
    path = Path(path)
    if not tag or any(c.isspace() for c in tag):
        raise ValueError(f"run tag must be non-empty without whitespace, got {tag!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path) as f:
        for qid, hits in run.items():
            for rank, (docid, score) in enumerate(hits, 1):
                if any(c.isspace() for c in qid + docid):
                    raise ValueError(f"ids may not contain whitespace: {qid!r} {docid!r}")
                # repr: the shortest text that reads back as the same float. Rounding to a
                # few decimals creates ties that reorder documents when the file is re-scored.
                f.write(f"{qid} Q0 {docid} {rank} {float(score)!r} {tag}\n")
    return path


def read_run(path: str | Path) -> dict[str, list[tuple[str, float]]]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"run file not found: {path}")
    run: dict[str, list[tuple[str, float]]] = {}
    seen: set[tuple[str, str]] = set()
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 6:
                raise DataError(f"{path}:{lineno}: expected 6 columns 'qid Q0 docid rank score tag', got {len(parts)}")
            qid, _, docid, _, score, _ = parts
            try:
                value = float(score)
            except ValueError:
                raise DataError(f"{path}:{lineno}: score {score!r} is not a number") from None
            if (qid, docid) in seen:
                raise DataError(f"{path}:{lineno}: document {docid!r} appears twice for query {qid!r}")
            seen.add((qid, docid))
            run.setdefault(qid, []).append((docid, value))
    for hits in run.values():
        hits.sort(key=lambda h: -h[1])
    return run
