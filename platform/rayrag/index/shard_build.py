"""Writing sharded indexes: a first build, appends, deletions (the layout is in ``sharded.py``).

* **Build:** the encode output's shards are split into ``n`` runs of consecutive shards
  (document ranges), balanced by document count; each run becomes one complete index. Dense
  indexes are copies of one trained index (IVF-PQ: quantizer and codebooks trained once, on
  the same sample a single index would use), so every shard scores on the same scale.
* **Append:** a new encode output (same model and dimension) becomes new shards, copied
  from the same trained index; old shards are not read or rewritten.
* **Delete:** ids go to ``deleted.tsv``; search filters them at merge time. Re-adding a deleted
  document (an update) is an append of its new version.

Each operation ends by rewriting the top manifest atomically, so a crash leaves the previous
index intact (a shard folder a crashed append left behind is not listed, and is replaced by the
next append). Writers take an exclusive lock beside the folder for the whole operation, so an
append and a delete (or two of either) never commit from the same old manifest. A deletions
file is never rewritten or removed (each state gets a new name), so a reader that checked one
manifest always finds the file it names. Replicas serve the state they loaded: a rebuild,
append or deletion reaches them when they load the index again (docs/SERVE.md).
"""
from __future__ import annotations

import contextlib
import fcntl
import shutil
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ..encode.store import read_dense, read_sparse
from ..errors import ConfigError, DataError
from ..io import atomic_dir, atomic_write_bytes, atomic_write_json, atomic_write_text, sha256_file
from .faiss_index import FaissParams, fill_index, train_faiss, training_rows
from .sharded import deleted_pairs, verify_sharded
from .store import read_ids, read_manifest, save_index


def group_shards(infos: list[dict], n: int) -> list[list[dict]]:
    """``n`` runs of consecutive encode shards with about equal document counts."""
    if n > len(infos):
        raise ConfigError(f"shards={n} but the encode output has only {len(infos)} shards: "
                          f"encode with a smaller docs_per_shard or ask for fewer index shards")
    bounds = np.cumsum([i["count"] for i in infos])
    edges = [0]
    for j in range(1, n):  # run j ends where the running count comes nearest to j/n of the documents
        target = bounds[-1] * j / n
        i = int(np.searchsorted(bounds, target))  # bounds[i] is the first count >= target
        cut = i if i > 0 and target - bounds[i - 1] < bounds[i] - target else i + 1
        edges.append(min(max(cut, edges[-1] + 1), len(infos) - (n - j)))  # no run left empty
    edges.append(len(infos))
    return [infos[a:b] for a, b in zip(edges, edges[1:])]


@contextlib.contextmanager
def writer_lock(out: Path) -> Iterator[None]:
    """One writer at a time for the index in ``out`` (an flock on ``.<name>.lock`` beside it,
    which survives the folder being replaced by a rebuild)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / f".{out.name}.lock", "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DataError(f"{out}: another index job is writing this index; run this one after it") from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _sample(emb: Path, groups: list[list[dict]], total: int, p: FaissParams, dim: int) -> np.ndarray:
    """The training sample ``build_faiss`` would draw from all vectors, gathered group by group."""
    rows = training_rows(total, p)
    sample = np.empty((len(rows), dim), dtype=np.float32)
    lo = 0
    for group in groups:
        _, vecs = read_dense(emb, shards=group)
        hit = (rows >= lo) & (rows < lo + len(vecs))
        sample[hit] = vecs[rows[hit] - lo]
        lo += len(vecs)
    return sample


def _write_shards(emb: Path, enc: dict, out: Path, groups: list[list[dict]], first: int, trained,
                  faiss: FaissParams | None, lineage: dict, corpus) -> list[dict]:
    """``corpus``: the documents' text ({id: Document}) to store beside each shard, or None."""
    entries = []
    for j, group in enumerate(groups):
        shard_dir = f"shards/{first + j:05d}"
        folder = out / shard_dir
        shutil.rmtree(folder, ignore_errors=True)  # an unlisted leftover of a crashed append
        if enc["kind"] == "dense":
            ids, vecs = read_dense(emb, shards=group)
            index = fill_index(trained, vecs, faiss)
        else:
            from .sparse_index import InvertedIndex

            ids, matrix = read_sparse(emb, shards=group)
            index = InvertedIndex(matrix)
        docs = None if corpus is None else {i: corpus[i] for i in ids}
        m = save_index(folder, enc["kind"], index, ids, {**lineage, "encode_shards": [g["shard"] for g in group]}, docs)
        entries.append({"dir": shard_dir, "count": m["count"], "manifest_sha256": sha256_file(folder / "manifest.json"),
                        # each shard's own lineage: appends come from other encode runs and corpora
                        **{k: lineage.get(k) for k in ("embeddings", "corpus", "corpus_sha256", "mlflow_run_id")}})
        print(f"[index] shard {shard_dir}: {m['count']} documents", flush=True)
    return entries


def _files(out: Path, names: list[str]) -> dict[str, str]:
    return {n: sha256_file(out / n) for n in names if (out / n).is_file()}


def build_sharded(emb: Path, enc: dict, out: Path, n: int, faiss: FaissParams | None, lineage: dict,
                  corpus: Callable[[list[str]], dict] | None) -> dict:
    """A new sharded index in ``out`` (replacing what was there only once it is complete).
    ``corpus``: loads the passages of the given ids, to store (None: none stored)."""
    groups = group_shards(enc["shards"], n)
    with writer_lock(out), atomic_dir(out, replace=True) as tmp:
        trained = None
        if enc["kind"] == "dense":
            sample = _sample(emb, groups, enc["count"], faiss, enc["dim"]) if faiss.kind == "ivfpq" else None
            trained = train_faiss(sample, enc["dim"], enc["count"], faiss)
            import faiss as faiss_lib

            atomic_write_bytes(tmp / "trained.faiss", faiss_lib.serialize_index(trained).tobytes())
        docs = corpus and corpus(encode_ids(emb, enc))
        entries = _write_shards(emb, enc, tmp, groups, 0, trained, faiss, lineage, docs)
        manifest = {**lineage, "kind": "sharded", "shard_kind": enc["kind"], "shards": entries,
                    "count": sum(e["count"] for e in entries), "deleted_count": 0, "passages": corpus is not None,
                    "files": _files(tmp, ["trained.faiss"])}
        atomic_write_json(tmp / "manifest.json", manifest)
    return manifest


def append_shards(emb: Path, enc: dict, out: Path, n: int, lineage: dict,
                  corpus: Callable[[list[str]], dict] | None) -> dict:
    """Add ``emb``'s documents to the sharded index in ``out`` as ``n`` new shards."""
    with writer_lock(out):
        manifest = read_manifest(out)
        if manifest.get("kind") != "sharded":
            raise ConfigError(f"append=true needs a sharded index in {out}: build one with shards=N first")
        verify_sharded(out, manifest)
        # same encoder, same weights: vectors of another checkpoint would not compare with the
        # index's (and IVF-PQ's codebooks were trained on the index's model)
        for key in ("model", "model_version", "dim"):
            if manifest.get(key) != lineage.get(key):
                raise ConfigError(f"cannot append: the index was built with {key}={manifest.get(key)!r}, "
                                  f"{emb} has {key}={lineage.get(key)!r}")
        if manifest["shard_kind"] != enc["kind"]:
            raise ConfigError(f"cannot append {enc['kind']} vectors to a {manifest['shard_kind']} index")
        if manifest.get("passages", True) != (corpus is not None):
            raise ConfigError(f"cannot append with passages={corpus is not None}: the index's shards were built "
                              f"with passages={manifest.get('passages', True)}, and every shard must match")
        deleted = set(deleted_pairs(out, manifest))
        live = {d for e in manifest["shards"] for d in _checked_ids(out / e["dir"]) if (e["dir"], d) not in deleted}
        new_ids = encode_ids(emb, enc)
        clash = [d for d in new_ids if d in live]
        if clash:
            raise DataError(f"cannot append: {len(clash)} documents are already in the index (e.g. {clash[0]!r}); "
                            f"delete them first (rayrag index-delete) to replace them")
        trained, faiss = None, None
        if enc["kind"] == "dense":
            import faiss as faiss_lib

            from ..config import from_dict

            trained = faiss_lib.deserialize_index(np.frombuffer((out / "trained.faiss").read_bytes(), dtype=np.uint8))
            faiss = from_dict(FaissParams, manifest["index"])
        entries = _write_shards(emb, enc, out, group_shards(enc["shards"], n), len(manifest["shards"]), trained,
                                faiss, lineage, corpus and corpus(new_ids))
        manifest = {**manifest, "shards": manifest["shards"] + entries,
                    "count": manifest["count"] + sum(e["count"] for e in entries)}
        atomic_write_json(out / "manifest.json", manifest)  # the commit point of the append
        return manifest


def _checked_ids(shard: Path) -> list[str]:
    """A shard's ids.txt, checked against its manifest before a writer relies on it."""
    from .store import verify_files

    verify_files(shard, {"ids.txt": read_manifest(shard)["files"]["ids.txt"]}, "manifest.json")
    return read_ids(shard)


def _shard_ids(emb: Path, info: dict) -> list[str]:
    import pyarrow.parquet as pq

    return pq.read_table(emb / info["file"], columns=["id"]).column("id").to_pylist()


def encode_ids(emb: Path, enc: dict) -> list[str]:
    """Every id of an encode output, in order, without reading its vectors."""
    return [d for s in enc["shards"] for d in _shard_ids(emb, s)]


def delete_docs(out: Path, ids: list[str]) -> dict:
    """Mark ``ids`` deleted in the sharded index in ``out``; every id must be live in it."""
    with writer_lock(out):
        manifest = read_manifest(out)
        if manifest.get("kind") != "sharded":
            raise ConfigError(f"{out} is not a sharded index: deletions apply to sharded indexes "
                              f"(rebuild an unsharded index without the documents instead)")
        verify_sharded(out, manifest)
        pairs = deleted_pairs(out, manifest)
        done = set(pairs)
        where: dict[str, str] = {}
        for e in manifest["shards"]:  # the newest live copy of each id
            for d in _checked_ids(out / e["dir"]):
                if (e["dir"], d) not in done:
                    where[d] = e["dir"]
        unknown = [d for d in dict.fromkeys(ids) if d not in where]
        if unknown:
            raise DataError(f"{len(unknown)} ids are not live documents of {out} (e.g. {unknown[0]!r}); "
                            f"nothing deleted")
        pairs += [(where[d], d) for d in dict.fromkeys(ids)]
        # A new file per state, never removed: a reader that checked the previous manifest still
        # finds the file it names, and a crash before the manifest is rewritten changes nothing.
        # The count only grows, so a name is never reused.
        name = f"deleted-{len(pairs):09d}.tsv"
        atomic_write_text(out / name, "".join(f"{s}\t{d}\n" for s, d in pairs))
        old = [n for n in manifest.get("files", {}) if n.startswith("deleted-")]
        files = {**{k: v for k, v in manifest.get("files", {}).items() if k not in old}, name: sha256_file(out / name)}
        manifest = {**manifest, "files": files, "deleted_count": len(pairs)}
        atomic_write_json(out / "manifest.json", manifest)  # the commit point
        return manifest
