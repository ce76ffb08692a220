"""Passage text beside an index, memory-mapped: a replica reads only the pages of the passages
it returns, so a corpus larger than RAM can be served and replicas on one node share the OS's
page cache instead of each holding a copy (``load_passages`` holds the whole corpus per replica).

Format: an uncompressed Arrow IPC file (``passages.arrow``) with columns id, title, text, row i
being the index's row i. Why Arrow IPC and not Parquet: Parquet pages are encoded and must be
decoded into process memory, so reading a row costs a page decode and memory per reader; an
uncompressed IPC file maps straight onto Arrow arrays, zero-copy. Why not a key-value store
(LMDB, RocksDB): the index already maps a hit to its row, so a lookup by row needs no key
search, and pyarrow is already a dependency. Its checksum goes in the index manifest like
every other file.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, Mapping

from ..data.beir import Document
from ..errors import DataError
from ..io import atomic_path

PASSAGES_FILE = "passages.arrow"
CHUNK_ROWS = 65_536  # record batch size: a row lookup finds its batch among N / CHUNK_ROWS


def write_passages(path: Path, ids: list[str], corpus: Mapping[str, Document]) -> None:
    """``corpus``: every id's Document (``load_passages`` checks that)."""
    import pyarrow as pa

    table = pa.table({"id": pa.array(ids, pa.string()),
                      "title": pa.array([corpus[i].title for i in ids], pa.string()),
                      "text": pa.array([corpus[i].text for i in ids], pa.string())})
    with atomic_path(path) as tmp:
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table, max_chunksize=CHUNK_ROWS)


class PassageStore:
    """Rows of one ``passages.arrow``, memory-mapped. ``ids`` must be the index's id list: the
    file is checked to hold exactly those ids in that order, so row i is index row i."""

    def __init__(self, path: Path, ids: list[str]):
        import pyarrow as pa

        self.path = path
        self.table = pa.ipc.open_file(pa.memory_map(str(path), "r")).read_all()  # zero-copy view
        if self.table.num_rows != len(ids) or self.table.column("id").to_pylist() != ids:
            raise DataError(f"{path}: its ids differ from the index's ids.txt (count {self.table.num_rows} "
                            f"vs {len(ids)}): rebuild the index")
        self._title, self._text = self.table.column("title"), self.table.column("text")

    def __len__(self) -> int:
        return self.table.num_rows

    def row(self, i: int) -> Document:
        return Document(self._title[i].as_py() or "", self._text[i].as_py() or "")


class Passages(Mapping):
    """``{doc id: Document}`` over one or more stores (one per shard) without loading them: the
    id -> (store, row) map is the only per-document state held in memory."""

    def __init__(self, stores: list[PassageStore], ids_per_store: list[list[str]]):
        self.stores = stores
        self._where: dict[str, tuple[int, int]] = {}
        for s, ids in enumerate(ids_per_store):
            for r, doc_id in enumerate(ids):
                self._where[doc_id] = (s, r)  # a re-added id: the newest shard's copy wins

    def __getitem__(self, doc_id: str) -> Document:
        s, r = self._where[doc_id]
        return self.stores[s].row(r)

    def __iter__(self) -> Iterator[str]:
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)


def load_passages(path: Path, sha256: str | None, ids: list[str]) -> dict[str, Document]:
    """The passages behind ``ids``; the corpus must be the one the index was built from."""
    from ..io import sha256_file

    if not path.is_file():
        raise DataError(f"corpus {path} not found: set `corpus` to the BEIR corpus the index was built from")
    if sha256 and sha256_file(path) != sha256:
        raise DataError(f"corpus {path} differs from the one the index was built from (sha256 mismatch)")
    if path.suffix == ".parquet":
        corpus = _read_parquet(path)
    else:
        from ..data.beir import load_corpus

        corpus = load_corpus(path)
    missing = [i for i in ids if i not in corpus]
    if missing:
        raise DataError(f"corpus {path} lacks {len(missing)} indexed documents (e.g. {missing[0]!r})")
    return {i: corpus[i] for i in ids}


def _read_parquet(path: Path) -> dict[str, Document]:
    import pyarrow.parquet as pq

    table = pq.read_table(path, columns=["_id", "title", "text"]).to_pydict()
    return {str(i): Document(t or "", x or "") for i, t, x in zip(table["_id"], table["title"], table["text"])}
