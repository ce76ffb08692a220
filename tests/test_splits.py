"""The dev split carved out of train for datasets without one (rayrag/data/splits.py)."""
from __future__ import annotations

import hashlib
import json

import pytest

from rayrag.data import load_beir
from rayrag.data.splits import available_splits, derived_dev, split_query_ids
from rayrag.errors import DataError


def test_scifact_dev_is_100_train_queries_never_trained_on(data_dir):
    folder = data_dir / "scifact"
    every, train, dev = (load_beir(folder, s) for s in ("train_all", "train", "dev"))
    assert (len(every.queries), len(train.queries), len(dev.queries)) == (809, 709, 100)
    assert not set(dev.queries) & set(train.queries)
    assert set(dev.queries) | set(train.queries) == set(every.queries)
    assert not set(dev.queries) & set(load_beir(folder, "test").queries)
    assert all(dev.qrels[q] == every.qrels[q] for q in dev.qrels)  # judgments from train.tsv
    assert split_query_ids(folder, "dev") == set(dev.queries)
    assert available_splits(folder) == ["dev", "test", "train", "train_all"]


def test_dev_depends_only_on_the_ids():
    ids = [str(i) for i in range(809)]
    dev = derived_dev(ids)
    assert dev == derived_dev(reversed(ids)) == derived_dev(ids + ids[:5])  # order and repeats don't matter
    assert len(dev) == 100
    # the rule, written out: the 100 ids whose sha256("rayrag-dev:" + id) sorts first
    first = sorted(ids, key=lambda q: hashlib.sha256(f"rayrag-dev:{q}".encode()).hexdigest())[:100]
    assert dev == set(first)
    assert len(derived_dev(ids[:40])) == 8  # at most a fifth of a small train set


def _dataset(folder, train=(), dev=None):
    (folder / "qrels").mkdir(parents=True)
    qids = [*train, *(dev or ())]
    (folder / "corpus.jsonl").write_text(json.dumps({"_id": "d1", "text": "a"}) + "\n")
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": f"query {q}"}) + "\n" for q in qids))
    for name, ids in (("train", train), ("dev", dev)):
        if ids is not None:
            (folder / "qrels" / f"{name}.tsv").write_text("".join(f"{q}\td1\t1\n" for q in ids))
    return folder


def test_a_published_dev_split_is_kept(tmp_path):
    folder = _dataset(tmp_path, train=[f"t{i}" for i in range(20)], dev=["v1", "v2"])
    assert set(load_beir(folder, "dev").queries) == {"v1", "v2"}
    assert len(load_beir(folder, "train").queries) == len(load_beir(folder, "train_all").queries) == 20


def test_too_small_for_a_dev_split(tmp_path):
    folder = _dataset(tmp_path, train=["t1", "t2"])
    assert len(load_beir(folder, "train").queries) == 2
    with pytest.raises(DataError, match="split 'dev' of .* has no queries"):
        load_beir(folder, "dev")
