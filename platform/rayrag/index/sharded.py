"""A sharded index: N complete indexes searched in parallel and merged exactly.

Layout (written by ``shard_build.py``)::

    manifest.json            kind "sharded": the shards in order, each shard manifest's sha256,
                             the shared trained index, the deletions; written last (commit point)
    trained.faiss            dense: the empty trained index every shard was copied from (for
                             IVF-PQ the coarse quantizer and PQ codebooks), kept for appends
    deleted-<n>.tsv          the n documents deleted since: "<shard dir>\\t<id>" per line
    shards/<dir>/            a complete index (index.faiss | postings.npz, ids.txt,
                             passages.arrow, manifest.json), loadable on its own

Rows are global: shard s's row r is ``offsets[s] + r``, and ``ids`` is every shard's ids.txt
in order, so callers use a ShardedIndex exactly as they use one FAISS or inverted index
(``search`` keeps each kind's own return convention). Each shard answers its own top
``k + (its deleted rows)``, so at least ``k`` live results survive the deletion filter.
"""
from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import DataError
from .merge import merge_topk

# One shard's search: (queries, k) -> (scores [Q, k'], local rows [Q, k'], -1 = none)
Searcher = Callable[[object, int], tuple[np.ndarray, np.ndarray]]


def local_searcher(loaded) -> Searcher:
    """Search one loaded shard in this process (FAISS and scipy release the GIL while they work)."""
    if loaded.kind == "dense":
        from .faiss_index import search_faiss

        return lambda q, k: search_faiss(loaded.index, q, k)

    def sparse(q, k):
        rows, scores = loaded.index.search(q, k)
        return scores, rows
    return sparse


class ShardedIndex:
    """Shards behind ``searchers`` (in this process, or Ray actors: ``shard_actors.py``)."""

    def __init__(self, kind: str, dim: int, counts: list[int], deleted_rows: np.ndarray,
                 searchers: list[Searcher], tuners: list[Callable] | None = None):
        self.kind = kind  # the shards' kind: "dense" | "sparse"
        self.counts = list(counts)
        self.offsets = np.concatenate([[0], np.cumsum(self.counts)]).astype(np.int64)
        self.deleted = np.sort(np.asarray(deleted_rows, dtype=np.int64))
        # per shard: how many of its rows are deleted, so it is asked for that many more
        self.deleted_per_shard = np.diff(np.searchsorted(self.deleted, self.offsets))
        self.searchers, self.tuners = searchers, tuners or []
        self._pool = ThreadPoolExecutor(max_workers=len(searchers), thread_name_prefix="shard")
        self.d = self.vocab_size = dim  # FAISS's and the inverted index's names for the dimension
        self.on_actors = False  # True when the searchers are Ray actors (load_sharded sets it)

    @property
    def ntotal(self) -> int:  # FAISS's name for the number of rows (deleted ones included)
        return int(self.offsets[-1])

    num_docs = ntotal  # the inverted index's name for it

    def set_params(self, p) -> None:
        """FAISS search settings (nprobe, efSearch, re-scoring) on every shard."""
        for tune in self.tuners:
            tune(p)

    def search_rows(self, queries, k: int) -> tuple[np.ndarray, np.ndarray]:
        """-> (scores [Q, k'], global rows [Q, k']): every shard in parallel, merged exactly."""
        jobs = [self._pool.submit(search, queries, int(min(k + extra, n)))
                for search, extra, n in zip(self.searchers, self.deleted_per_shard, self.counts)]
        parts = []
        for off, job in zip(self.offsets[:-1], jobs):
            scores, rows = job.result()
            rows = np.asarray(rows, dtype=np.int64)
            parts.append((scores, np.where(rows >= 0, rows + off, -1)))
        return merge_topk(parts, k, self.deleted)

    def search(self, queries, k: int):
        """The shards' own convention: dense -> (scores, rows) as FAISS; sparse -> (rows, scores)."""
        scores, rows = self.search_rows(queries, k)
        if self.kind == "dense":
            return scores, rows
        return rows, np.where(rows >= 0, scores, 0.0)


SHARD_DIR = re.compile(r"shards/\d{5}")


def verify_sharded(folder: Path, manifest: dict) -> None:
    """The top manifest's own files, and each shard's manifest, against their recorded sha256
    (each shard's files are checked against its manifest when it loads)."""
    from .store import verify_files

    if not manifest.get("shards"):
        raise DataError(f"{folder}/manifest.json: a sharded index must list its shards")
    bad = [s.get("dir") for s in manifest["shards"] if not SHARD_DIR.fullmatch(str(s.get("dir")))]
    if bad:  # never a path outside the folder, whatever the manifest says
        raise DataError(f"{folder}/manifest.json: shard folders must be shards/<5 digits>, got {bad[:3]}")
    if manifest.get("shard_kind") == "dense" and "trained.faiss" not in manifest.get("files", {}):
        raise DataError(f"{folder}/manifest.json: a dense sharded index must list trained.faiss")
    if manifest.get("count") != sum(s["count"] for s in manifest["shards"]):
        raise DataError(f"{folder}/manifest.json: count {manifest.get('count')} != the shards' total")
    verify_files(folder, manifest.get("files", {}), "manifest.json")
    verify_files(folder, {f"{s['dir']}/manifest.json": s["manifest_sha256"] for s in manifest["shards"]},
                 "manifest.json")


def deleted_pairs(folder: Path, manifest: dict) -> list[tuple[str, str]]:
    """The (shard dir, id) pairs of the deletions file the manifest names (checked by
    ``verify_sharded``; such a file is never rewritten or removed, see ``shard_build``)."""
    names = [n for n in manifest.get("files", {}) if n.startswith("deleted-")]
    if not names:
        return []
    lines = (folder / names[0]).read_text().splitlines()
    pairs = [tuple(line.split("\t", 1)) for line in lines if line]
    if len(pairs) != manifest.get("deleted_count"):
        raise DataError(f"{folder}/{names[0]}: {len(pairs)} deletions, the manifest says {manifest.get('deleted_count')}")
    return pairs


def load_sharded(folder: Path, manifest: dict, expected_dim: int | None = None,
                 shard_actor_cpus: float | None = None):
    """The shards (checksums, sizes, dimension as ``load_index``), deletions and passages.

    ``shard_actor_cpus``: each shard is loaded and searched by a Ray actor (``shard_actors.py``), and
    this process holds only the ids and the memory-mapped passages."""
    from .store import LoadedIndex, load_index

    folder = Path(folder)
    verify_sharded(folder, manifest)
    pairs = deleted_pairs(folder, manifest)  # read now, with the manifest it was checked against
    dirs = [e["dir"] for e in manifest["shards"]]
    if shard_actor_cpus:
        from .shard_actors import start_shard_actors

        kinds, ids_per_shard, searchers, tuners = start_shard_actors(folder, manifest, expected_dim,
                                                                     shard_actor_cpus)
    else:
        # passages=False: the shards' passages are opened once, below, for all of them
        shards = [load_index(folder / d, expected_dim, passages=False) for d in dirs]
        kinds = [s.kind for s in shards]
        ids_per_shard = [s.ids for s in shards]
        searchers = [local_searcher(s) for s in shards]
        tuners = [_tuner(s) for s in shards if s.kind == "dense"]
    if set(kinds) != {manifest.get("shard_kind")}:
        raise DataError(f"{folder}: shards are {sorted(set(kinds))}, the manifest says {manifest.get('shard_kind')!r}")
    for entry, ids in zip(manifest["shards"], ids_per_shard):
        if len(ids) != entry["count"]:
            raise DataError(f"{folder / entry['dir']}: holds {len(ids)} documents, the manifest says {entry['count']}")
    offsets = np.concatenate([[0], np.cumsum([len(ids) for ids in ids_per_shard])])
    by_dir: dict[str, list[str]] = {}
    for shard_dir, doc_id in pairs:
        by_dir.setdefault(shard_dir, []).append(doc_id)
    deleted = []
    for shard_dir, doc_ids in by_dir.items():  # rows looked up only in shards with deletions
        i = dirs.index(shard_dir) if shard_dir in dirs else -1
        rows = {d: r for r, d in enumerate(ids_per_shard[i])} if i >= 0 else {}
        for doc_id in doc_ids:
            if doc_id not in rows:
                raise DataError(f"{folder}: deleted {doc_id!r} is not in shard {shard_dir!r}")
            deleted.append(offsets[i] + rows[doc_id])
    index = ShardedIndex(manifest["shard_kind"], manifest["dim"], [len(ids) for ids in ids_per_shard],
                         np.array(deleted, dtype=np.int64), searchers, tuners)
    index.on_actors = bool(shard_actor_cpus)
    return LoadedIndex(manifest["shard_kind"], index, [d for ids in ids_per_shard for d in ids], manifest,
                       _open_passages(folder, dirs, ids_per_shard))


def _open_passages(folder: Path, dirs: list[str], ids_per_shard: list[list[str]]):
    """The shards' passages (checksums checked) without loading their indexes; None if any lacks them."""
    from .passages import PASSAGES_FILE, Passages, PassageStore
    from .store import read_manifest, verify_files

    stores = []
    for shard_dir, ids in zip(dirs, ids_per_shard):
        files = read_manifest(folder / shard_dir).get("files", {})
        if PASSAGES_FILE not in files:
            return None
        verify_files(folder / shard_dir, {PASSAGES_FILE: files[PASSAGES_FILE]}, "manifest.json")
        stores.append(PassageStore(folder / shard_dir / PASSAGES_FILE, ids))
    return Passages(stores, ids_per_shard)


def _tuner(loaded) -> Callable:
    from .faiss_index import set_search_params

    return lambda p: set_search_params(loaded.index, p)
