import json

import pytest

from rayrag.datagen.mine import MineConfig, filter_negatives, run_mine
from rayrag.errors import ConfigError


def test_filter_drops_positives_and_near_positives():
    cands = [("p", 10.0), ("a", 9.9), ("b", 9.0), ("c", 5.0), ("d", 4.0)]
    kept, dropped = filter_negatives(cands, {"p": 10.0}, num=2, max_neg_ratio=0.95)
    assert [k["id"] for k in kept] == ["b", "c"] and kept[0]["rank"] == 3
    assert dropped == {"positive": 1, "margin": 1, "teacher": 0}
    kept, dropped = filter_negatives(cands, {"p": 10.0}, num=5, max_neg_ratio=None,
                                     teacher={"a": 0.9, "b": 0.2, "c": 0.1, "d": 0.8}, teacher_threshold=0.5)
    assert [k["id"] for k in kept] == ["b", "c"] and kept[0]["teacher_score"] == 0.2
    assert dropped["teacher"] == 2


@pytest.mark.parametrize("overrides, message", [
    ({"teacher_threshold": 0.5}, "needs a teacher"),
    ({"max_neg_ratio": 1.5}, r"must be in \(0, 1\]"),
    ({"retriever": "colbert"}, "unknown retriever"),
])
def test_bad_mine_config(overrides, message):
    from rayrag.config import from_dict

    with pytest.raises(ConfigError, match=message):
        from_dict(MineConfig, overrides)


def test_mine_scifact_train_with_bm25_and_a_teacher(tmp_path, data_dir, tiny_bert, ray_local):
    out = tmp_path / "ex.jsonl"
    stats = run_mine(MineConfig(data_dir=str(data_dir), output=str(out), depth=50, num_negatives=8,
                                teacher=f"dense:{tiny_bert}", cpus=1))
    rows = [json.loads(l) for l in out.read_text().splitlines()]
    assert len(rows) == stats["queries"] == 709  # SciFact's 809 train queries less the 100 of dev
    from rayrag.data import load_beir

    qrels = load_beir(data_dir / "scifact", "train").qrels
    assert not {r["query_id"] for r in rows} & set(load_beir(data_dir / "scifact", "dev").queries)
    for r in rows:
        pos = {p["id"] for p in r["positives"]}
        assert pos == set(qrels[r["query_id"]])
        assert not pos & {n["id"] for n in r["negatives"]}
        assert len(r["negatives"]) <= 8 and all("teacher_score" in n for n in r["negatives"])
        low = min(p["score"] for p in r["positives"])
        assert all(n["score"] <= 0.95 * low for n in r["negatives"])
    assert stats["dropped_positive"] > 300 and stats["dropped_margin"] > 0
