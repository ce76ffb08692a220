"""Saved indexes: ``index.faiss`` or ``postings.npz``, ``ids.txt`` and a manifest with checksums.

Loading re-checks every checksum, the id count against the index size and, when the caller
knows it, the query encoder's dimension, so a damaged or mismatched index fails loudly
instead of returning wrong neighbours.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DataError
from ..io import atomic_path, atomic_write_bytes, atomic_write_json, sha256_file

INDEX_FILES = {"dense": "index.faiss", "sparse": "postings.npz"}


@dataclass
class LoadedIndex:
    kind: str  # "dense" | "sparse"
    index: Any  # faiss index or InvertedIndex
    ids: list[str]
    manifest: dict


def save_index(folder: Path, kind: str, index: Any, ids: list[str], manifest: dict) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    main = folder / INDEX_FILES[kind]
    if kind == "dense":
        import faiss

        atomic_write_bytes(main, faiss.serialize_index(index).tobytes())
    else:
        with atomic_path(main) as tmp:
            index.save(tmp)
    atomic_write_bytes(folder / "ids.txt", ("\n".join(ids) + "\n").encode())
    manifest = dict(manifest, kind=kind, count=len(ids), files={
        main.name: sha256_file(main), "ids.txt": sha256_file(folder / "ids.txt")})
    atomic_write_json(folder / "manifest.json", manifest)  # written last: the index is complete
    return manifest


def load_index(folder: str | Path, expected_dim: int | None = None) -> LoadedIndex:
    folder = Path(folder)
    mpath = folder / "manifest.json"
    if not mpath.is_file():
        raise DataError(f"{folder} is not a finished rayrag index (no manifest.json)")
    try:
        manifest = json.loads(mpath.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{mpath}: malformed JSON ({e.msg})") from None
    kind = manifest.get("kind")
    if kind not in INDEX_FILES:
        raise DataError(f"{mpath}: unknown index kind {kind!r}")
    for name, digest in manifest.get("files", {}).items():
        path = folder / name
        if not path.is_file():
            raise DataError(f"{path} is missing (listed in {mpath.name})")
        if sha256_file(path) != digest:
            raise DataError(f"{path}: checksum mismatch: the file is damaged or was replaced after indexing")
    if set(manifest.get("files", {})) != {INDEX_FILES[kind], "ids.txt"}:
        raise DataError(f"{mpath}: must list checksums for {INDEX_FILES[kind]} and ids.txt")
    ids = (folder / "ids.txt").read_text().split("\n")[:-1]
    if kind == "dense":
        import faiss
        import numpy as np

        index = faiss.deserialize_index(np.frombuffer((folder / "index.faiss").read_bytes(), dtype=np.uint8))
        size, dim = index.ntotal, index.d
    else:
        from .sparse_index import InvertedIndex

        index = InvertedIndex.load(folder / "postings.npz")
        size, dim = index.num_docs, index.vocab_size
    if size != len(ids) or size != manifest.get("count"):
        raise DataError(f"{folder}: index holds {size} vectors but ids.txt has {len(ids)} "
                        f"and the manifest says {manifest.get('count')}")
    if dim != manifest.get("dim"):
        raise DataError(f"{folder}: index dimension {dim} != manifest dimension {manifest.get('dim')}")
    if expected_dim is not None and dim != expected_dim:
        raise DataError(f"{folder}: index dimension {dim} does not match the query encoder's {expected_dim} "
                        f"(index built with model {manifest.get('model')!r})")
    return LoadedIndex(kind, index, ids, manifest)
