import json

import pytest

from rayrag.data.mtrag import load_mtrag
from rayrag.errors import DataError


def test_real_mtrag_turns(data_dir):
    ds = load_mtrag(data_dir / "mtrag")
    assert len(ds.turns) == 507
    judged = ds.judged()
    assert len(judged) == 332
    assert sum(len(t.positives) for t in judged) == 851
    assert 1100 <= len(ds.pool) <= 1200
    assert all(p in ds.pool for t in judged for p in t.positives)
    t = next(t for t in ds.turns if t.qid == "18ef26058d321c5d96ca3ebf8117789e<::>7")
    assert t.turn == 7 and t.collection == "fiqa"
    assert t.question.startswith("I mean current EV's battery")
    assert t.history[0] == ("user", "How to pay with cash when car shopping?")
    assert len(t.history) == 12 and t.history[-1][0] == "agent"
    assert t.conversation_text().endswith("user: " + t.question)


def _mini(root, task_lines, qrels="query-id\tcorpus-id\tscore\nc1<::>2\tp1\t1\n", rewrite=None):
    gen = root / "mtragun-human" / "generation_tasks"
    q = root / "mtragun-human" / "retrieval_tasks" / "qrels"
    gen.mkdir(parents=True)
    q.mkdir(parents=True)
    (gen / "reference.jsonl").write_text("".join(l if isinstance(l, str) else json.dumps(l) + "\n" for l in task_lines))
    (q / "govt.tsv").write_text(qrels)
    if rewrite:
        rw = root / "mtrag-human" / "retrieval_tasks" / "govt"
        rw.mkdir(parents=True)
        (rw / "govt_rewrite.jsonl").write_text(json.dumps(rewrite) + "\n")
    return root


TASK = {"task_id": "c1<::>2", "conversation_id": "c1", "turn": "2", "Collection": "govt",
        "input": [{"speaker": "user", "text": "hi"}, {"speaker": "agent", "text": "hello"},
                  {"speaker": "user", "text": "what is it?"}],
        "contexts": [{"document_id": "p1", "text": "passage one"}]}


def test_mini_with_rewrite(tmp_path):
    ds = load_mtrag(_mini(tmp_path, [TASK], rewrite={"_id": "c1<::>2", "text": "|user|: what is X?"}))
    (t,) = ds.turns
    assert (t.question, t.rewrite, t.positives, t.history) == (
        "what is it?", "what is X?", {"p1": 1}, (("user", "hi"), ("agent", "hello")))


@pytest.mark.parametrize("tasks, qrels, message", [
    (['{"task_id": \n'], None, r"reference.jsonl:1: malformed JSON"),
    ([TASK, TASK], None, r"reference.jsonl:2: duplicate task_id"),
    ([dict(TASK, input=[{"speaker": "user", "text": "q"}, {"speaker": "agent", "text": "a"}])], None,
     r"reference.jsonl:1: the last input turn must be the user's question"),
    ([dict(TASK, input=[])], None, r"reference.jsonl:1: 'input' must be a non-empty list"),
    ([{k: v for k, v in TASK.items() if k != "contexts"}], None, r"reference.jsonl:1: missing field 'contexts'"),
    ([TASK], "query-id\tcorpus-id\tscore\nc9<::>1\tp1\t1\n", r"govt.tsv:2: turn 'c9<::>1' is not a task"),
    ([TASK], "query-id\tcorpus-id\tscore\nc1<::>2\tp9\t1\n", r"govt.tsv:2: passage 'p9' has no text"),
])
def test_mtrag_bad_input(tmp_path, tasks, qrels, message):
    kw = {"qrels": qrels} if qrels else {}
    with pytest.raises(DataError, match=message):
        load_mtrag(_mini(tmp_path, tasks, **kw))


def test_mtrag_missing_file(tmp_path):
    with pytest.raises(DataError, match="MTRAG reference file not found"):
        load_mtrag(tmp_path)
