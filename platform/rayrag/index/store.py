"""Saved indexes: ``index.faiss`` or ``postings.npz``, ``ids.txt``, optionally the passages
(``passages.arrow``), and a manifest with checksums. A sharded index (``sharded.py``) is a
folder of such indexes under one more manifest; ``load_index`` opens either.

Loading re-checks every checksum, the id count against the index size and, when the caller
knows it, the query encoder's dimension, so a damaged or mismatched index fails loudly
instead of returning wrong neighbours.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DataError
from ..io import atomic_path, atomic_write_bytes, atomic_write_json, sha256_file, read_manifest as _read_manifest
from .passages import PASSAGES_FILE, Passages, PassageStore

INDEX_FILES = {"dense": "index.faiss", "sparse": "postings.npz"}


@dataclass
class LoadedIndex:
    kind: str  # "dense" | "sparse"
    index: Any  # faiss index or InvertedIndex
    ids: list[str]
    manifest: dict
    passages: Any = None  # Mapping[id, Document] over memory-mapped passages.arrow, when stored


def single_index(loaded: LoadedIndex, use: str):
    """``loaded``'s own FAISS index or inverted index: for callers that read its internals
    (the postings matrix), which a sharded index does not expose as one object."""
    if loaded.manifest.get("kind") == "sharded":
        raise DataError(f"{use} reads one index's postings directly; it does not take a sharded index "
                        f"(build the index without shards=N)")
    return loaded.index


def index_kind(manifest: dict) -> str | None:
    """"dense" or "sparse": what the vectors are, for one index or a sharded one."""
    return manifest.get("shard_kind") if manifest.get("kind") == "sharded" else manifest.get("kind")


def index_files(kind: str) -> set[str]:
    """The files a saved index of ``kind`` must list (passages.arrow may be listed too)."""
    return {INDEX_FILES[kind], "ids.txt"}


def save_index(folder: Path, kind: str, index: Any, ids: list[str], manifest: dict, corpus=None) -> dict:
    """Write the index, its ids and (with ``corpus``, a ``{id: Document}`` mapping) its passages;
    the manifest, with every file's checksum, is written last."""
    from .passages import write_passages

    folder.mkdir(parents=True, exist_ok=True)
    main = folder / INDEX_FILES[kind]
    if kind == "dense":
        import faiss

        atomic_write_bytes(main, faiss.serialize_index(index).tobytes())
    else:
        with atomic_path(main) as tmp:
            index.save(tmp)
    atomic_write_bytes(folder / "ids.txt", ("\n".join(ids) + "\n").encode())
    names = [main.name, "ids.txt"]
    if corpus is not None:
        write_passages(folder / PASSAGES_FILE, ids, corpus)
        names.append(PASSAGES_FILE)
    manifest = dict(manifest, kind=kind, count=len(ids), files={n: sha256_file(folder / n) for n in names})
    atomic_write_json(folder / "manifest.json", manifest)  # written last: the index is complete
    return manifest


def read_ids(folder: Path) -> list[str]:
    """ids.txt as ``save_index`` writes it: one id per line, row order, newline-terminated."""
    return (folder / "ids.txt").read_text().split("\n")[:-1]


def read_manifest(folder: Path) -> dict:
    """A saved index's manifest (one index or sharded), or a DataError saying why not."""
    return _read_manifest(folder, "rayrag index")


def load_index(folder: str | Path, expected_dim: int | None = None,
               shard_actor_cpus: float | None = None, passages: bool = True) -> LoadedIndex:
    """A saved index, every checksum and size checked; a sharded one behaves as one index
    (``shard_actor_cpus``: its shards are loaded and searched by Ray actors of that many CPUs).
    ``passages=False``: a stored passages file is neither checksummed nor opened (a shard
    loaded for searching only)."""
    folder = Path(folder)
    mpath = folder / "manifest.json"
    manifest = read_manifest(folder)
    kind = manifest.get("kind")
    if kind == "sharded":
        from .sharded import load_sharded

        return load_sharded(folder, manifest, expected_dim, shard_actor_cpus)
    if kind not in INDEX_FILES:
        raise DataError(f"{mpath}: unknown index kind {kind!r}")
    listed = set(manifest.get("files", {}))
    verify_files(folder, {n: d for n, d in manifest.get("files", {}).items() if passages or n != PASSAGES_FILE},
                 mpath.name)
    if not index_files(kind) <= listed <= index_files(kind) | {PASSAGES_FILE}:
        raise DataError(f"{mpath}: must list checksums for {INDEX_FILES[kind]} and ids.txt "
                        f"(and {PASSAGES_FILE} when stored), lists {sorted(listed)}")
    ids = read_ids(folder)
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
    store = None
    if passages and PASSAGES_FILE in listed:
        store = Passages([PassageStore(folder / PASSAGES_FILE, ids)], [ids])
    return LoadedIndex(kind, index, ids, manifest, store)


def check_index(folder: str | Path) -> None:
    """Fail now on a damaged or incomplete index, before any work starts: one index is loaded
    (checksums, sizes, dimension); a sharded one has every shard's files checksummed without
    loading them, so the check does not need the memory of the whole index (its shards are
    loaded where they are searched, which repeats the size and dimension checks)."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    if manifest.get("kind") != "sharded":
        load_index(folder)
        return
    from .sharded import verify_sharded

    verify_sharded(folder, manifest)
    for entry in manifest["shards"]:
        shard = folder / entry["dir"]
        verify_files(shard, read_manifest(shard).get("files", {}), "manifest.json")


def verify_files(folder: Path, files: dict[str, str], listed_in: str) -> None:
    """Every file a manifest lists exists and still has its recorded sha256."""
    for name, digest in files.items():
        path = folder / name
        if not path.is_file():
            raise DataError(f"{path} is missing (listed in {listed_in})")
        if sha256_file(path) != digest:
            raise DataError(f"{path}: checksum mismatch: the file is damaged or was replaced after indexing")
