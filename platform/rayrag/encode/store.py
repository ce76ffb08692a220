"""Embedding shards on disk: Parquet files written atomically, plus the manifest.

Layout of an encode output folder::

    plan.json                   what is being encoded (corpus checksum, model, shard size)
    shards/shard-00007.parquet  dense: (id, vector) | sparse: (id, indices, values)
    shards/shard-00007.json     written after the parquet: count + sha256 = "this shard is done"
    manifest.json               written last: the folder is complete

A shard without its .json sidecar (or whose checksum does not match) is redone on resume,
so a kill at any moment leaves exactly one copy of every finished document.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import ConfigError, DataError
from ..io import atomic_path, atomic_write_json, read_manifest, sha256_file


def shard_paths(out: Path, index: int) -> tuple[Path, Path]:
    base = out / "shards" / f"shard-{index:05d}"
    return base.with_suffix(".parquet"), base.with_suffix(".json")


def write_dense_shard(out: Path, index: int, ids: list[str], vectors: np.ndarray, meta: dict | None = None) -> dict:
    import pyarrow as pa

    dim = vectors.shape[1]
    table = pa.table({
        "id": pa.array(ids, pa.string()),
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.astype(np.float32).ravel()), dim),
    })
    return write_table_shard(out, index, table, meta)


def write_sparse_shard(out: Path, index: int, ids: list[str], matrix, meta: dict | None = None) -> dict:
    """``matrix``: scipy CSR [n, vocab]."""
    import pyarrow as pa

    matrix = matrix.tocsr()
    offsets = pa.array(matrix.indptr.astype(np.int32))
    table = pa.table({
        "id": pa.array(ids, pa.string()),
        "indices": pa.ListArray.from_arrays(offsets, pa.array(matrix.indices.astype(np.int32))),
        "values": pa.ListArray.from_arrays(offsets, pa.array(matrix.data.astype(np.float32))),
    })
    return write_table_shard(out, index, table, meta)


def write_table_shard(out: Path, index: int, table, meta: dict | None = None) -> dict:
    """Commit one shard (any Arrow table): Parquet first, then the sidecar that says it is done
    (with ``meta``, e.g. the Ray node that encoded it)."""
    import pyarrow.parquet as pq

    parquet, sidecar = shard_paths(out, index)
    parquet.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(parquet) as tmp:
        pq.write_table(table, tmp)
    info = {"shard": index, "file": f"shards/{parquet.name}", "count": table.num_rows,
            "sha256": sha256_file(parquet), **(meta or {})}
    atomic_write_json(sidecar, info)  # the commit point of this shard
    return info


def finished_shard(out: Path, index: int, expected_count: int) -> dict | None:
    """The shard's sidecar if the shard is complete and intact, else None (redo it)."""
    parquet, sidecar = shard_paths(out, index)
    if not (parquet.is_file() and sidecar.is_file()):
        return None
    try:
        info = json.loads(sidecar.read_text())
    except json.JSONDecodeError:
        return None
    if info.get("count") != expected_count or info.get("sha256") != sha256_file(parquet):
        return None
    return info


def prepare_output(out: Path, plan_record: dict, overwrite: bool, what: str = "an encode") -> dict | None:
    """Claim ``out`` for ``plan_record`` (written to plan.json); return the existing manifest when
    this exact plan is already finished. A folder holding another plan is refused unless
    ``overwrite`` (then its shards and manifest go), so resumed shards never mix two plans."""
    plan_file = out / "plan.json"
    if plan_file.is_file():
        old = json.loads(plan_file.read_text())
        if old != plan_record:
            if not overwrite:
                changed = sorted(k for k in set(old) | set(plan_record) if old.get(k) != plan_record.get(k))
                raise ConfigError(f"{out} holds {what} of a different plan (changed: {', '.join(changed)}); "
                                  f"use another output_dir or overwrite=true")
            shutil.rmtree(out / "shards", ignore_errors=True)
            (out / "manifest.json").unlink(missing_ok=True)
        elif (out / "manifest.json").is_file():
            return load_manifest(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "shards").mkdir(exist_ok=True)
    atomic_write_json(plan_file, plan_record)
    clean_temp_files(out)
    return None


def clean_temp_files(out: Path) -> None:
    for p in (out / "shards").glob(".shard-*"):
        p.unlink(missing_ok=True)


def load_manifest(folder: str | Path) -> dict:
    return read_manifest(folder, "encode output")


def iter_shards(folder: str | Path, verify: bool = True,
                shards: list[dict] | None = None) -> Iterator[tuple[dict, "object"]]:
    """Yield ``(shard_info, pyarrow.Table)`` for each shard of a finished encode output (or for
    ``shards``, a part of its manifest's list)."""
    import pyarrow.parquet as pq

    folder = Path(folder)
    manifest = load_manifest(folder)
    for info in manifest["shards"] if shards is None else shards:
        path = folder / info["file"]
        if not path.is_file():
            raise DataError(f"{path}: shard listed in the manifest is missing")
        if verify and sha256_file(path) != info["sha256"]:
            raise DataError(f"{path}: checksum mismatch (file changed or damaged since encoding)")
        yield info, pq.read_table(path)


def read_dense(folder: str | Path, verify: bool = True,
               shards: list[dict] | None = None) -> tuple[list[str], np.ndarray]:
    """All ids and vectors of a dense encode output, or of ``shards`` of it (for indexing;
    memory = N x dim floats)."""
    manifest = load_manifest(folder)
    if manifest["kind"] != "dense":
        raise DataError(f"{folder}: holds {manifest['kind']} vectors, not dense")
    ids: list[str] = []
    count = manifest["count"] if shards is None else sum(s["count"] for s in shards)
    vecs = np.empty((count, manifest["dim"]), dtype=np.float32)
    row = 0
    for _, table in iter_shards(folder, verify, shards):
        n = table.num_rows
        ids.extend(table.column("id").to_pylist())
        flat = table.column("vector").combine_chunks().flatten().to_numpy()
        vecs[row:row + n] = flat.reshape(n, manifest["dim"])
        row += n
    if row != count:
        raise DataError(f"{folder}: manifest says {count} vectors, shards hold {row}")
    return ids, vecs


def read_sparse(folder: str | Path, verify: bool = True, shards: list[dict] | None = None):
    """All ids and a CSR [N, vocab] matrix of a sparse encode output (or of ``shards`` of it)."""
    import scipy.sparse as sp

    manifest = load_manifest(folder)
    if manifest["kind"] != "sparse":
        raise DataError(f"{folder}: holds {manifest['kind']} vectors, not sparse")
    ids, blocks = [], []
    for _, table in iter_shards(folder, verify, shards):
        ids.extend(table.column("id").to_pylist())
        ind = table.column("indices").combine_chunks()
        val = table.column("values").combine_chunks()
        indptr = ind.offsets.to_numpy()
        blocks.append(sp.csr_matrix((val.flatten().to_numpy(), ind.flatten().to_numpy(), indptr - indptr[0]),
                                    shape=(table.num_rows, manifest["dim"])))
    return ids, sp.vstack(blocks).tocsr()
