"""Deterministic corpus shards, so an encode job can be resumed shard by shard.

A shard is a contiguous range of documents identified by where it starts in the input
(a byte offset in JSONL, a row group in Parquet). Planning reads the corpus once, streaming,
keeping only offsets and a running checksum, never the documents.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

from ..errors import DataError
from ..io import sha256_file


@dataclass(frozen=True)
class ShardSpec:
    index: int
    path: str
    fmt: str  # "jsonl" | "parquet"
    start: int  # jsonl: byte offset; parquet: first row group
    stop: int  # jsonl: byte offset (exclusive); parquet: row group (exclusive)
    first_line: int  # 1-based line (jsonl) or row (parquet) of the shard's first document
    count: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ShardPlan:
    corpus: str
    fmt: str
    corpus_sha256: str
    num_docs: int
    shards: list[ShardSpec]


def _fmt(path: Path) -> str:
    if path.suffix == ".jsonl":
        return "jsonl"
    if path.suffix == ".parquet":
        return "parquet"
    raise DataError(f"{path}: corpus must be BEIR .jsonl or .parquet (columns _id, title, text)")


def plan_shards(corpus: str | Path, docs_per_shard: int) -> ShardPlan:
    path = Path(corpus).resolve()
    if not path.is_file():
        raise DataError(f"corpus file not found: {path}")
    if docs_per_shard < 1:
        raise DataError(f"docs_per_shard must be >= 1, got {docs_per_shard}")
    fmt = _fmt(path)
    return _plan_jsonl(path, docs_per_shard) if fmt == "jsonl" else _plan_parquet(path, docs_per_shard)


def _plan_jsonl(path: Path, n: int) -> ShardPlan:
    digest = hashlib.sha256()
    shards: list[ShardSpec] = []
    offset, start, start_line, count, total = 0, 0, 1, 0, 0
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, 1):
            digest.update(line)
            if line.strip():
                if count == 0:
                    start, start_line = offset, lineno
                count += 1
                total += 1
            offset += len(line)
            if count == n:
                shards.append(ShardSpec(len(shards), str(path), "jsonl", start, offset, start_line, count))
                count = 0
    if count:
        shards.append(ShardSpec(len(shards), str(path), "jsonl", start, offset, start_line, count))
    if not total:
        raise DataError(f"{path}: corpus is empty")
    return ShardPlan(str(path), "jsonl", digest.hexdigest(), total, shards)


def _plan_parquet(path: Path, n: int) -> ShardPlan:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    missing = {"_id", "text"} - set(pf.schema_arrow.names)
    if missing:
        raise DataError(f"{path}: parquet corpus lacks column(s) {sorted(missing)}")
    corpus_sha256 = sha256_file(path)
    shards: list[ShardSpec] = []
    rg_start, rows, first_row, total = 0, 0, 1, 0
    meta = pf.metadata
    for rg in range(meta.num_row_groups):
        rows += meta.row_group(rg).num_rows
        if rows >= n or rg == meta.num_row_groups - 1:
            if rows:
                shards.append(ShardSpec(len(shards), str(path), "parquet", rg_start, rg + 1, first_row, rows))
            first_row += rows
            total += rows
            rg_start, rows = rg + 1, 0
    if not total:
        raise DataError(f"{path}: corpus is empty")
    return ShardPlan(str(path), "parquet", corpus_sha256, total, shards)


def read_shard(spec: ShardSpec) -> Iterator[tuple[str, str]]:
    """Yield ``(doc_id, full_text)`` for one shard, validating each document."""
    if spec.fmt == "jsonl":
        with open(spec.path, "rb") as f:
            f.seek(spec.start)
            data = f.read(spec.stop - spec.start)
        for i, raw in enumerate(data.split(b"\n")):
            if not raw.strip():
                continue
            lineno = spec.first_line + i
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError as e:
                raise DataError(f"{spec.path}:{lineno}: malformed JSON ({e.msg})") from None
            yield _doc(obj, spec.path, lineno)
    else:
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(spec.path)
        row = spec.first_line
        for rg in range(spec.start, spec.stop):
            for obj in pf.read_row_group(rg).to_pylist():
                yield _doc(obj, spec.path, row)
                row += 1


def _doc(obj: dict, path: str, lineno: int) -> tuple[str, str]:
    if not isinstance(obj, dict) or "_id" not in obj or not isinstance(obj.get("text"), str):
        raise DataError(f"{path}:{lineno}: each document needs '_id' and a string 'text'")
    title = obj.get("title") or ""
    text = obj["text"]
    return str(obj["_id"]), (f"{title} {text}".strip() if title else text)
