"""What a BEIR split name means, including ``dev`` for datasets that publish none.

SciFact (like several BEIR sets) publishes only ``train`` and ``test``. Choosing recipes on test
makes the reported test figures optimistic, so for a dataset without ``qrels/dev.tsv``:

* ``dev`` is ``DEV_QUERIES`` (100) of the queries judged in ``qrels/train.tsv`` (at most a fifth
  of them): those whose ``sha256("rayrag-dev:" + query id)`` sorts first, ties by id. The choice
  depends only on the ids, not on file order, Python's hash seed or the machine. Judgments come
  from train.tsv. For SciFact: 100 of the 809 train queries.
* ``train`` is the rest of train.tsv (709 for SciFact): what mining and training use.
* ``train_all`` is all of train.tsv: for a final model trained on every query once the
  settings are chosen (with the train job's ``holdout=null``).

A dataset with its own ``qrels/dev.tsv`` keeps it: ``dev`` is that file, and ``train`` and
``train_all`` are both train.tsv. (MTRAG's ``qrels/dev.tsv`` is its evaluation set, loaded by
``data/mtrag.py``; its splits would have to be by conversation, not by query.)
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from ..errors import DataError
from .jsonl import read_qrels

DEV_QUERIES = 100
DEV_MAX_SHARE = 5  # dev takes at most 1/5 of the train queries, so a small train set stays mostly train
DEV_SALT = "rayrag-dev:"  # changing it changes every derived dev split: don't


def derived_dev(train_qids: Iterable[str]) -> frozenset[str]:
    """The dev queries carved out of these train query ids (see module docstring)."""
    qids = sorted(set(train_qids))
    n = min(DEV_QUERIES, len(qids) // DEV_MAX_SHARE)
    ranked = sorted(qids, key=lambda q: (hashlib.sha256((DEV_SALT + q).encode()).hexdigest(), q))
    return frozenset(ranked[:n])


@dataclass(frozen=True)
class SplitSource:
    """Where a split's judgments come from: a qrels file, maybe narrowed to some of its queries."""
    qrels: Path
    only: frozenset[str] | None = None  # keep just these query ids (a derived dev)
    without: frozenset[str] = frozenset()  # drop these (train without its derived dev)

    def select(self, qrels: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
        return {q: j for q, j in qrels.items() if (self.only is None or q in self.only) and q not in self.without}


def _file_qids(path: Path) -> set[str]:
    return {qid for _, qid, _, _ in read_qrels(path)}


def split_source(folder: Path, split: str) -> SplitSource:
    qrels = Path(folder) / "qrels"
    train = qrels / "train.tsv"
    if split == "train_all":
        return SplitSource(train)
    if split in ("dev", "train") and not (qrels / "dev.tsv").is_file() and train.is_file():
        dev = derived_dev(_file_qids(train))
        return SplitSource(train, only=dev) if split == "dev" else SplitSource(train, without=dev)
    return SplitSource(qrels / f"{split}.tsv")


def available_splits(folder: Path) -> list[str]:
    qrels = Path(folder) / "qrels"
    have = {p.stem for p in qrels.glob("*.tsv")} if qrels.is_dir() else set()
    if "train" in have:
        have |= {"dev", "train_all"}
    return sorted(have)


def missing_split(folder: Path, split: str, source: SplitSource) -> DataError:
    return DataError(f"split {split!r} not found: {source.qrels} is missing "
                     f"(splits here: {', '.join(available_splits(folder)) or 'none'})")


def split_query_ids(folder: Path, split: str) -> frozenset[str]:
    """Ids of the queries judged in ``split``, reading only qrels files (no corpus): what the train
    job holds out of its examples."""
    source = split_source(folder, split)
    if not source.qrels.is_file():
        raise missing_split(folder, split, source)
    return frozenset(source.select({q: {} for q in _file_qids(source.qrels)}))
