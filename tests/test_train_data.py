"""Training data, configs and schedules: no Ray needed."""
from __future__ import annotations

import json

import numpy as np
import pytest

from rayrag.config import load_config
from rayrag.errors import ConfigError, DataError
from rayrag.train.config import TrainConfig
from rayrag.train.engine import lr_lambda
from rayrag.train.examples import BatchPlan, Example, check_plan, load_examples, make_group

CORPUS = {"d1", "d2", "d3", "d4"}


def _write(tmp_path, lines):
    p = tmp_path / "ex.jsonl"
    p.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return p


def _ex(q="what is x", pos=("d1",), neg=("d2", "d3"), teacher=False):
    doc = (lambda i, s: {"id": i, "score": s, **({"teacher_score": s} if teacher else {})})
    return {"query_id": "q", "query": q, "positives": [doc(i, 1.0) for i in pos],
            "negatives": [doc(i, 0.5) for i in neg]}


@pytest.mark.parametrize("line, message", [
    ("{not json", "malformed JSON"),
    ('["a"]', "expected a JSON object"),
    (_ex(q="  "), "'query' must be a non-empty string"),
    (_ex(pos=()), "no positives"),
    (_ex(neg=("nope",)), "'nope' is not in the corpus"),
    ({"query": "x", "positives": "d1"}, "must be a list of objects"),
])
def test_bad_examples_name_file_and_line(tmp_path, line, message):
    path = _write(tmp_path, [_ex(), line])
    with pytest.raises(DataError, match=message) as e:
        load_examples(path, CORPUS, need_negatives=True, need_teacher=False)
    assert f"{path}:2" in str(e.value)


def test_examples_missing_file_and_teacher(tmp_path):
    with pytest.raises(DataError, match="run `rayrag mine` first"):
        load_examples(tmp_path / "none.jsonl", CORPUS, True, False)
    with pytest.raises(DataError, match="no teacher_score"):
        load_examples(_write(tmp_path, [_ex()]), CORPUS, True, need_teacher=True)
    ex = load_examples(_write(tmp_path, [_ex(teacher=True)]), CORPUS, True, need_teacher=True)
    assert ex[0].teacher == {"d1": 1.0, "d2": 0.5, "d3": 0.5}


def test_examples_without_negatives_are_skipped_not_fatal(tmp_path):
    path = _write(tmp_path, [_ex(), _ex(neg=())])
    assert len(load_examples(path, CORPUS, need_negatives=True, need_teacher=False)) == 1
    assert len(load_examples(path, CORPUS, need_negatives=False, need_teacher=False)) == 2
    with pytest.raises(DataError, match="no usable training examples"):
        load_examples(_write(tmp_path, [_ex(neg=())]), CORPUS, True, False)


def test_the_train_job_drops_dev_queries_from_the_examples(tmp_path, data_dir):
    """Examples of dev queries (here, from a file mined on train_all) are never trained on."""
    from rayrag.data import load_beir
    from rayrag.train.run import prepare_data

    every = load_beir(data_dir / "scifact", "train_all")
    dev = set(load_beir(data_dir / "scifact", "dev").queries)
    qids = sorted(every.queries)[:60]
    lines = [{"query_id": q, "query": every.queries[q], "positives": [{"id": d} for d in every.qrels[q]],
              "negatives": [{"id": "4983"}]} for q in qids]
    path = _write(tmp_path, lines)
    in_dev = [q for q in qids if q in dev]
    assert 0 < len(in_dev) < len(qids)
    common = [f"examples={path}", f"data_dir={data_dir}", "batch_size=2", "group_size=2", "eval.split=null"]
    data = prepare_data(load_config(TrainConfig, None, common))
    assert data["held_out_examples"] == len(in_dev)
    assert [ex.query_id for ex in data["examples"]] == [q for q in qids if q not in dev]
    data = prepare_data(load_config(TrainConfig, None, [*common, "holdout=null"]))
    assert data["held_out_examples"] == 0 and len(data["examples"]) == len(qids)
    # without query ids there is no telling which examples are dev queries
    _write(tmp_path, [{k: v for k, v in line.items() if k != "query_id"} for line in lines])
    with pytest.raises(DataError, match="without 'query_id'.*holdout=null"):
        prepare_data(load_config(TrainConfig, None, common))
    assert load_config(TrainConfig, None, []).eval.split == "dev"  # evaluation during training too


def test_worker_shards_concatenate_to_the_single_process_batch():
    plan1, plan2 = BatchPlan(50, 8, 1, 1), BatchPlan(50, 4, 2, 1)
    order = plan1.order(seed=3, epoch=1)
    assert np.array_equal(order, plan2.order(seed=3, epoch=1))
    for micro in range(plan2.micro_per_epoch):
        both = np.concatenate([plan2.indices(order, micro, r) for r in range(2)])
        assert np.array_equal(both, plan1.indices(order, micro, 0))
    assert not np.array_equal(order, plan1.order(seed=3, epoch=2))  # reshuffled every epoch
    assert BatchPlan(50, 4, 2, 3).steps_per_epoch == 2  # 6 whole micro-batches -> 2 steps of 3
    with pytest.raises(DataError, match="fewer than one optimizer step"):
        check_plan(BatchPlan(5, 4, 2, 1))


def test_groups_are_seeded_and_put_the_positive_first():
    ex = Example("q", "query", ("d1",), ("d2", "d3", "d4"), None)
    text = {d: d.upper() for d in ["d1", "d2", "d3", "d4"]}
    g = make_group(ex, 0, epoch=0, seed=1, group_size=3, from_top=2, text=text)
    assert g.docs[0] == "D1" and set(g.docs[1:]) <= {"D2", "D3"} and len(g.docs) == 3
    assert g == make_group(ex, 0, epoch=0, seed=1, group_size=3, from_top=2, text=text)
    # fewer mined negatives than needed: sampled with replacement rather than a short group
    assert len(make_group(ex, 0, 0, 1, group_size=6, from_top=2, text=text).docs) == 6


@pytest.mark.parametrize("override, message", [
    ("objective=contrastive", "objective must be one of"),
    ("zero_stage=4", "zero_stage must be"),
    ("schedule=step", "schedule must be"),
    ("batch_size=0", "batch_size must be >= 1"),
    ("group_size=1", "group_size must be >= 2"),
    ("lr=-1", "must be > 0"),
    ("warmup_ratio=1.5", "warmup_ratio"),
    ("max_steps=0", "max_steps"),
])
def test_bad_train_config(override, message):
    extra = ["objective=lce"] if override == "group_size=1" else []
    with pytest.raises(ConfigError, match=message):
        load_config(TrainConfig, None, [*extra, override])


def test_objective_specific_rules():
    with pytest.raises(ConfigError, match="set group_size=2"):
        load_config(TrainConfig, None, ["objective=margin_mse", "group_size=4"])
    with pytest.raises(ConfigError, match="train cross-encoders fully"):
        load_config(TrainConfig, None, ["objective=lce", "lora.enabled=true"])
    assert load_config(TrainConfig, None, ["objective=llm_yesno", "lora.enabled=true"]).kind == "llm"


def test_schedules():
    f = lr_lambda("linear", warmup=10, total=110)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.5) and f(110) == 0.0
    c = lr_lambda("cosine", warmup=0, total=100)
    assert c(0) == pytest.approx(1.0) and c(50) == pytest.approx(0.5) and c(100) == pytest.approx(0.0)
    assert lr_lambda("constant", 5, 100)(80) == 1.0

