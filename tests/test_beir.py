import json

import pytest

from rayrag.data import dataset_dir, load_beir
from rayrag.errors import DataError


def test_scifact_loads_as_published(data_dir):
    test = load_beir(data_dir / "scifact", "test")
    train = load_beir(data_dir / "scifact", "train_all")  # all of qrels/train.tsv, dev included
    assert len(test.corpus) == 5183
    assert (len(test.queries), sum(map(len, test.qrels.values()))) == (300, 339)
    assert (len(train.queries), sum(map(len, train.qrels.values()))) == (809, 919)
    assert not set(test.queries) & set(train.queries)
    doc = test.corpus["4983"]
    assert doc.title.startswith("Microstructural development") and doc.full_text.startswith(doc.title + " ")


def _write(folder, corpus=None, queries=None, qrels=None):
    corpus = corpus if corpus is not None else [{"_id": "d1", "title": "T", "text": "a b"}, {"_id": "d2", "text": "c"}]
    queries = queries if queries is not None else [{"_id": "q1", "text": "a"}]
    qrels = qrels if qrels is not None else "query-id\tcorpus-id\tscore\nq1\td1\t1\n"
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    (folder / "corpus.jsonl").write_text(corpus if isinstance(corpus, str) else "".join(json.dumps(c) + "\n" for c in corpus))
    (folder / "queries.jsonl").write_text(queries if isinstance(queries, str) else "".join(json.dumps(q) + "\n" for q in queries))
    (folder / "qrels" / "test.tsv").write_text(qrels)
    return folder


def test_minimal_dataset(tmp_path):
    ds = load_beir(_write(tmp_path), "test")
    assert ds.qrels == {"q1": {"d1": 1}} and ds.corpus["d2"].title == ""


@pytest.mark.parametrize("kwargs, message", [
    ({"corpus": '{"_id": "d1", "text": "a"}\n{"_id": "d2", "text": \n'}, r"corpus.jsonl:2: malformed JSON"),
    ({"corpus": ""}, r"corpus.jsonl: corpus is empty"),
    ({"corpus": [{"_id": "d1", "text": "a"}, {"_id": "d1", "text": "b"}]}, r"corpus.jsonl:2: duplicate document id 'd1' \(first at line 1\)"),
    ({"corpus": [{"_id": "d1"}]}, r"corpus.jsonl:1: missing field 'text'"),
    ({"corpus": [{"_id": "d1", "text": 5}]}, r"corpus.jsonl:1: field 'text' must be a string"),
    ({"corpus": "[1, 2]\n"}, r"corpus.jsonl:1: expected a JSON object"),
    ({"queries": [{"_id": "q1", "text": "a"}, {"_id": "q1", "text": "b"}]}, r"queries.jsonl:2: duplicate query id 'q1'"),
    ({"queries": [{"_id": "q1", "text": "  "}]}, r"queries.jsonl:1: query 'q1' has empty text"),
    ({"qrels": "query-id\tcorpus-id\tscore\nq9\td1\t1\n"}, r"test.tsv:2: query id 'q9' is not in queries.jsonl"),
    ({"qrels": "query-id\tcorpus-id\tscore\nq1\td9\t1\n"}, r"test.tsv:2: document id 'd9' is not in corpus.jsonl"),
    ({"qrels": "query-id\tcorpus-id\tscore\nq1\td1\tx\n"}, r"test.tsv:2: relevance score 'x' is not an integer"),
    ({"qrels": "query-id\tcorpus-id\tscore\nq1 d1 1\n"}, r"test.tsv:2: expected 3 tab-separated columns"),
    ({"qrels": "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td1\t1\n"}, r"test.tsv:3: duplicate judgment"),
    ({"qrels": "query-id\tcorpus-id\tscore\n"}, r"test.tsv: no judgments"),
])
def test_bad_input_names_file_and_line(tmp_path, kwargs, message):
    with pytest.raises(DataError, match=message):
        load_beir(_write(tmp_path, **kwargs), "test")


def test_missing_files(tmp_path):
    with pytest.raises(DataError, match="dataset folder not found"):
        load_beir(tmp_path / "nope", "test")
    _write(tmp_path)
    with pytest.raises(DataError, match=r"split 'dev' not found.*splits here: test"):
        load_beir(tmp_path, "dev")
    (tmp_path / "queries.jsonl").unlink()
    with pytest.raises(DataError, match="queries file not found"):
        load_beir(tmp_path, "test")


def test_dataset_dir_from_flag_or_env(tmp_path, monkeypatch, data_dir):
    monkeypatch.delenv("RAYRAG_DATA_DIR", raising=False)
    with pytest.raises(DataError, match="pass --data-dir or set RAYRAG_DATA_DIR"):
        dataset_dir("scifact")
    assert dataset_dir("scifact", data_dir) == data_dir / "scifact"
    monkeypatch.setenv("RAYRAG_DATA_DIR", str(data_dir))
    assert dataset_dir("scifact") == data_dir / "scifact"
    with pytest.raises(DataError, match=r"dataset 'nfcorpus' not found .*have: .*scifact"):
        dataset_dir("nfcorpus")
    monkeypatch.setenv("RAYRAG_DATA_DIR", str(tmp_path / "missing"))
    with pytest.raises(DataError, match="does not exist"):
        dataset_dir("scifact")
