import json

import pytest

from rayrag.data.mtrag import DOMAINS, load_human_tasks, load_mtragun, load_pool
from rayrag.errors import DataError


@pytest.fixture(scope="module")
def human(data_dir):
    return load_human_tasks(data_dir / "mtrag")


def test_real_human_tasks(human, data_dir):
    assert len(human) == 777
    assert len({t.conversation_id for t in human}) == 110
    per_domain = {d: sum(t.domain == d for t in human) for d in DOMAINS}
    assert per_domain == {"clapnq": 208, "cloud": 188, "fiqa": 180, "govt": 201}
    assert sum(len(t.qrels) for t in human) == 578 + 494 + 535 + 521
    t = next(t for t in human if t.qid == "dd6b6ffd177f2b311abe676261279d2f<::>3")
    assert (t.conversation_id, t.turn, t.domain) == ("dd6b6ffd177f2b311abe676261279d2f", 3, "clapnq")
    assert t.user_turns[0] == "where do the arizona cardinals play this week"
    assert t.last_turn == "Are the Arizona Cardinals and the Chicago Cardinals the same team?"
    assert t.rewrite == t.last_turn  # this turn needed no rewrite
    assert len(t.qrels) == 4 and all(r == 1 for r in t.qrels.values())
    assert all(len(t.user_turns) == t.turn and t.rewrite for t in human)


def test_real_pool_holds_the_judged_passages(human, data_dir):
    pool = load_pool(data_dir / "mtrag", "govt")
    assert len(pool) == 1760
    missing = {p for t in human if t.domain == "govt" for p in t.qrels if p not in pool}
    assert len(missing) == 4  # the pool README's four govt passages


def test_real_mtragun(data_dir):
    turns = load_mtragun(data_dir / "mtrag")
    assert len(turns) == 332 and sum(len(t.qrels) for t in turns) == 851
    assert {t.domain for t in turns} == set(DOMAINS)
    t = next(t for t in turns if t.qid == "18ef26058d321c5d96ca3ebf8117789e<::>7")
    assert (t.turn, t.domain, t.rewrite) == (7, "fiqa", None)
    assert t.last_turn.startswith("I mean current EV's battery")
    assert t.messages[0] == ("user", "How to pay with cash when car shopping?")
    assert len(t.messages) == 13 and t.messages[-2][0] == "agent" and len(t.user_turns) == 7
    human_convs = {t.conversation_id for t in load_human_tasks(data_dir / "mtrag")}
    assert not human_convs & {t.conversation_id for t in turns}  # why the two sets load separately


# ---- small bad files -------------------------------------------------------------------------------

C = "c1<::>"


def _human(root, questions=None, lastturn=None, rewrite=None, qrels=None):
    """A one-domain (govt) human task folder: conversation c1 with turns 1 and 2."""
    base = root / "mtrag-human" / "retrieval_tasks" / "govt"
    (base / "qrels").mkdir(parents=True)
    rows = {
        "questions": [{"_id": C + "1", "text": "|user|: hi"}, {"_id": C + "2", "text": "|user|: hi\n|user|: and X?"}],
        "lastturn": [{"_id": C + "1", "text": "|user|: hi"}, {"_id": C + "2", "text": "|user|: and X?"}],
        "rewrite": [{"_id": C + "1", "text": "|user|: hi"}, {"_id": C + "2", "text": "|user|: what is X?"}],
    }
    for form, given in (("questions", questions), ("lastturn", lastturn), ("rewrite", rewrite)):
        lines = given if given is not None else [json.dumps(r) for r in rows[form]]
        (base / f"govt_{form}.jsonl").write_text("".join(line + "\n" for line in lines))
    (base / "qrels" / "dev.tsv").write_text(qrels or f"query-id\tcorpus-id\tscore\n{C}1\tp1\t1\n{C}2\tp2\t1\n")
    return root


def test_mini_human(tmp_path):
    (t1, t2) = load_human_tasks(_human(tmp_path), ["govt"])
    assert t2.messages == (("user", "hi"), ("user", "and X?"))
    assert (t2.rewrite, t2.qrels, t2.turn) == ("what is X?", {"p2": 1}, 2)


def _q(qid, text):
    return json.dumps({"_id": qid, "text": text})


@pytest.mark.parametrize("kw, message", [
    ({"questions": ['{"_id": ']}, r"govt_questions.jsonl:1: malformed JSON"),
    ({"questions": [_q(C + "1", "|user|: hi"), json.dumps({"_id": C + "2"})]},
     r"govt_questions.jsonl:2: expected string fields '_id' and 'text'"),
    ({"questions": [_q(C + "1", "|user|: hi"), _q("c1-2", "|user|: x")]}, r"govt_questions.jsonl:2: id 'c1-2' is not"),
    ({"questions": [_q(C + "1", "|user|: hi"), _q(C + "1", "|user|: hi")]},
     r"govt_questions.jsonl:2: duplicate id 'c1<::>1' \(first at line 1\)"),
    ({"questions": [_q(C + "1", "hi")]}, r"govt_questions.jsonl:1: line 1 of the conversation does not start"),
    ({"questions": [_q(C + "1", "|agent|: hi")]}, r"govt_questions.jsonl:1: expected non-empty '\|user\|: ' lines"),
    ({"questions": [_q(C + "1", "|user|: hi"), _q(C + "2", "|user|: and X?")]},
     r"govt_questions.jsonl:2: turn 2 of 'c1' lists 1 user turns, expected 2"),
    ({"lastturn": [_q(C + "1", "|user|: hi")]},
     r"govt_questions.jsonl:2: turn 'c1<::>2' has no line in .*govt_lastturn.jsonl"),
    ({"rewrite": [_q(C + "1", "|user|: hi"), _q(C + "2", "|user|: x"), _q(C + "3", "|user|: y")]},
     r"govt_rewrite.jsonl:3: turn 'c1<::>3' has no line in .*govt_lastturn.jsonl"),
    ({"lastturn": [_q(C + "1", "|user|: hi"), _q(C + "2", "|user|: and Y?")]},
     r"govt_lastturn.jsonl:2: the last turn of 'c1<::>2' differs from the last user turn in govt_questions.jsonl line 2"),
    ({"rewrite": [_q(C + "1", "|user|: hi"), _q(C + "2", "|user|: a\n|user|: b")]},
     r"govt_rewrite.jsonl:2: a rewrite must be one"),
    ({"qrels": f"query-id\tcorpus-id\tscore\n{C}1\tp1\t1\n{C}9\tp2\t1\n"},
     r"dev.tsv:3: turn 'c1<::>9' is not among the tasks it judges"),
    ({"qrels": f"query-id\tcorpus-id\tscore\n{C}1\tp1\t1\n{C}1\tp1\t1\n"}, r"dev.tsv:3: duplicate judgment"),
    ({"qrels": f"query-id\tcorpus-id\tscore\n{C}1\tp1\t1\n{C}2\tp1\t0\n"},
     r"dev.tsv: turn 'c1<::>2' \(govt_questions.jsonl line 2\) has no relevant passage"),
    ({"qrels": f"query-id\tcorpus-id\tscore\n{C}1\tp1\tyes\n"}, r"dev.tsv:2: relevance score 'yes' is not an integer"),
])
def test_human_bad_files(tmp_path, kw, message):
    with pytest.raises(DataError, match=message):
        load_human_tasks(_human(tmp_path, **kw), ["govt"])


def test_human_missing_file_and_domain(tmp_path):
    with pytest.raises(DataError, match=r"MTRAG query file not found: .*govt_lastturn.jsonl"):
        load_human_tasks(tmp_path, ["govt"])
    with pytest.raises(DataError, match=r"unknown MTRAG domain\(s\) \['banking'\]"):
        load_human_tasks(tmp_path, ["banking"])
    with pytest.raises(DataError, match=r"corpus file not found: .*pool/corpus/govt.jsonl"):
        load_pool(tmp_path, "govt")


def test_conversation_in_two_domains(tmp_path):
    _human(tmp_path)
    fiqa = tmp_path / "mtrag-human" / "retrieval_tasks" / "fiqa"
    (fiqa / "qrels").mkdir(parents=True)
    for form in ("questions", "lastturn", "rewrite"):
        (fiqa / f"fiqa_{form}.jsonl").write_text(_q(C + "1", "|user|: hi") + "\n")
    (fiqa / "qrels" / "dev.tsv").write_text(f"{C}1\tp1\t1\n")
    with pytest.raises(DataError, match=r"conversation 'c1' appears in both fiqa and govt"):
        load_human_tasks(tmp_path, ["fiqa", "govt"])


TASK = {"task_id": "c1<::>2", "conversation_id": "c1", "turn": "2", "Collection": "ibmcloud",
        "input": [{"speaker": "user", "text": "hi"}, {"speaker": "agent", "text": "hello\nthere"},
                  {"speaker": "user", "text": "what is it?"}]}


def _mtragun(root, tasks, qrels=f"query-id\tcorpus-id\tscore\n{C}2\tp1\t1\n"):
    gen = root / "mtragun-human" / "generation_tasks"
    q = root / "mtragun-human" / "retrieval_tasks" / "qrels"
    gen.mkdir(parents=True)
    q.mkdir(parents=True)
    (gen / "reference.jsonl").write_text("".join(t if isinstance(t, str) else json.dumps(t) + "\n" for t in tasks))
    for d in DOMAINS:
        (q / f"{d}.tsv").write_text(qrels if d == "cloud" else "query-id\tcorpus-id\tscore\n")
    return root


def test_mini_mtragun(tmp_path):
    (t,) = load_mtragun(_mtragun(tmp_path, [TASK, dict(TASK, task_id="c2<::>2", conversation_id="c2")]))
    assert (t.qid, t.domain, t.rewrite, t.qrels) == ("c1<::>2", "cloud", None, {"p1": 1})  # c2 unjudged: left out
    assert t.messages == (("user", "hi"), ("agent", "hello\nthere"), ("user", "what is it?"))


@pytest.mark.parametrize("tasks, qrels, message", [
    (['{"task_id": \n'], None, r"reference.jsonl:1: malformed JSON"),
    ([TASK, TASK], None, r"reference.jsonl:2: duplicate task_id 'c1<::>2' \(first at line 1\)"),
    ([dict(TASK, input=TASK["input"][:2])], None, r"reference.jsonl:1: the last input turn must be the user's"),
    ([dict(TASK, input=[])], None, r"reference.jsonl:1: 'input' must be a non-empty list"),
    ([dict(TASK, input=[{"speaker": "bot", "text": "x"}])], None, r"reference.jsonl:1: input\[0\] needs 'speaker'"),
    ([{k: v for k, v in TASK.items() if k != "Collection"}], None, r"reference.jsonl:1: missing field 'Collection'"),
    ([dict(TASK, turn="3")], None, r"reference.jsonl:1: task_id 'c1<::>2' disagrees with conversation_id 'c1' and turn '3'"),
    ([dict(TASK, Collection="banking")], None, r"reference.jsonl:1: unknown Collection 'banking'"),
    ([TASK], f"query-id\tcorpus-id\tscore\nc9<::>1\tp1\t1\n", r"cloud.tsv:2: turn 'c9<::>1' is not among the tasks"),
    ([dict(TASK, Collection="govt")], None, r"cloud.tsv: judges turn 'c1<::>2', which reference.jsonl line 1 puts in govt"),
])
def test_mtragun_bad_input(tmp_path, tasks, qrels, message):
    with pytest.raises(DataError, match=message):
        load_mtragun(_mtragun(tmp_path, tasks, **({"qrels": qrels} if qrels else {})))


def test_mtragun_missing_file(tmp_path):
    with pytest.raises(DataError, match="MTRAG reference file not found"):
        load_mtragun(tmp_path)
