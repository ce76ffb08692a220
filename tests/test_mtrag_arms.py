"""The MTRAG evaluation's DiSCo arms end to end: a per-domain saved SPLADE index, an LLM rewrite
file, a student with one model per fold, paired tests between arms, and the mtragun-human check.

Real govt turns and a real slice of the govt pool, in a real local Ray and MLflow store. Five
1-layer SPLADE models with different random weights stand in for the five fold students (tests
only: they are untrained), so a turn routed to the wrong fold would get a different ranking.
"""
import json
import shutil

import pytest

from rayrag.data.folds import conversation_domains, conversation_folds
from rayrag.data.mtrag import load_human_tasks
from rayrag.errors import ConfigError, DataError
from rayrag.eval import read_run
from rayrag.eval.mtrag import MtragEvalConfig, run_mtrag_eval
from rayrag.eval.mtrag_inputs import load_inputs
from rayrag.eval.mtrag_report import format_table
from rayrag.search.options import RetrieverOptions
from tests.serve_fixtures import make_sparse_index
from tests.test_mtrag_eval import _slice

K = 5


def _student(tiny_bert, folder, seed):
    """tiny_bert's architecture and tokenizer with other random weights: a stand-in fold model."""
    import torch
    from transformers import AutoConfig, AutoTokenizer, BertForMaskedLM

    torch.manual_seed(seed)
    BertForMaskedLM(AutoConfig.from_pretrained(tiny_bert)).save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_bert).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def setup(tmp_path_factory, data_dir, tiny_bert):
    tmp = tmp_path_factory.mktemp("mtrag-arms")
    root, turns = _slice(data_dir, tmp)
    for d in ("clapnq", "cloud", "fiqa"):  # the folds are dealt over every domain, as in training
        shutil.copytree(data_dir / "mtrag" / "mtrag-human" / "retrieval_tasks" / d,
                        root / "mtrag-human" / "retrieval_tasks" / d)
    make_sparse_index(tiny_bert, root / "pool" / "corpus" / "govt.jsonl", tmp / "index-govt", max_length=64)
    students = [_student(tiny_bert, tmp / f"students/fold{i}", 100 + i) for i in range(K)]
    rewrites = tmp / "rewrite.jsonl"  # the human rewrites in the rewrite job's layout, plus a turn not evaluated
    rewrites.write_text("".join(json.dumps({"_id": t.qid, "text": f"|user|: {t.rewrite}"}) + "\n" for t in turns)
                        + json.dumps({"_id": "other<::>1", "text": "|user|: unrelated"}) + "\n")
    all_turns = load_human_tasks(data_dir / "mtrag")
    fold_of = {c: f.index for f in conversation_folds(conversation_domains(all_turns), K, 0) for c in f.test}
    return {"tmp": tmp, "root": root, "turns": turns, "students": students, "rewrites": rewrites, "fold_of": fold_of}


def _cfg(setup, tiny_bert, **kw):
    tmp = setup["tmp"]
    base = dict(dataset=str(setup["root"]), output_dir=str(tmp / "out"), domains=["govt"], max_conversations=2,
                retrievers=["bm25", f"splade=index:{tmp}/index-{{domain}}"], history_tokenizer=str(tiny_bert),
                history_max_tokens=64, options=RetrieverOptions(sparse_max_length=64, max_length=64), num_cpus=2,
                permutations=1000, folds=K,
                query_forms=["last_turn", "history", "rewrite", f"rewrite:copy={setup['rewrites']}",
                             f"student:s={tmp}/students/fold{{fold}}"])
    return MtragEvalConfig(**{**base, **kw})


def test_every_arm_gives_figures_and_each_turn_meets_its_fold_model(setup, tiny_bert, ray_local):
    from rayrag.models.sparse import SpladeEncoder
    from rayrag.search.indexed import IndexRetriever

    cfg = _cfg(setup, tiny_bert)
    result = run_mtrag_eval(cfg)
    turns, out = setup["turns"], setup["tmp"] / "out"
    assert {setup["fold_of"][t.conversation_id] for t in turns} == {1, 2}  # two conversations, two fold models
    assert list(result["metrics"]["splade"]) == ["last_turn", "history", "rewrite", "rewrite:copy", "student:s"]
    assert list(result["metrics"]["bm25"]) == ["last_turn", "history", "rewrite", "rewrite:copy"]  # no student
    for label, forms in result["metrics"].items():
        for form, scopes in forms.items():
            assert set(scopes["all"]) == set(cfg.metrics)
    # the LLM-rewrite arm reads its file: the human rewrites copied there score as the rewrite arm
    assert result["metrics"]["splade"]["rewrite:copy"] == result["metrics"]["splade"]["rewrite"]
    assert set(result["query_terms"]["splade"]) == set(result["metrics"]["splade"])
    # fold routing: each turn was encoded by the model of the fold that holds its conversation
    folds = result["students"]["student:s"]
    assert {int(i): v["turns"] for i, v in folds.items()} == {i: sum(setup["fold_of"][t.conversation_id] == i
                                                                     for t in turns) for i in range(K)}
    run = read_run(out / "runs" / "splade.student_s.trec")
    history = load_inputs(cfg).queries["govt"]["history"]
    retriever = IndexRetriever(f"{setup['tmp']}/index-govt", max_length=64)
    retriever.index()
    for t in turns:
        fold = setup["fold_of"][t.conversation_id]
        mine, other = (SpladeEncoder(str(setup["students"][i]), max_length=64) for i in (fold, (fold + 1) % K))
        retriever.encoder = mine
        expected = retriever.search({t.qid: history[t.qid]}, 100)[t.qid]
        assert [d for d, _ in run[t.qid]][:10] == [d for d, _ in expected][:10]
        retriever.encoder = other
        assert retriever.search({t.qid: history[t.qid]}, 10)[t.qid] != expected[:10]  # routing matters
    # paired tests by conversation: the student against every other arm, Recall@10 and nDCG@10
    sig = result["significance"]["splade"]
    assert {"student:s vs last_turn", "student:s vs history", "student:s vs rewrite", "history vs last_turn"} <= set(sig)
    assert "student:s vs last_turn" not in result["significance"]["bm25"]
    for m in ("recall@10", "ndcg@10"):
        assert 0 < sig["student:s vs history"][m]["all"]["p"] <= 1
    assert json.loads((out / "result.json").read_text()) == result
    table = format_table(result)  # what the job prints at the end
    assert "student:s vs history ndcg@10 all:" in table and "rewrite:copy" in table
    print(table)


def test_mtragun_check_routes_unseen_conversations_and_keeps_agent_turns(setup, tiny_bert, data_dir):
    """turns=mtragun: conversations no fold trained on go to fold 0; with_agent keeps agent turns."""
    from transformers import AutoTokenizer

    from rayrag.data.conversation import format_conversation

    root = setup["root"]
    shutil.copytree(data_dir / "mtrag" / "mtragun-human", root / "mtragun-human", dirs_exist_ok=True)
    cfg = _cfg(setup, tiny_bert, turns="mtragun", with_agent=True, max_conversations=1,
               query_forms=["last_turn", "history", f"student:s={setup['tmp']}/students/fold{{fold}}"])
    cfg.validate()
    inputs = load_inputs(cfg)
    assert inputs.dataset == "mtragun-human" and inputs.turns and all(t.domain == "govt" for t in inputs.turns)
    assert set(inputs.students["student:s"].values()) == {str(setup["students"][0])}
    history = inputs.queries["govt"]["history"]
    tok = AutoTokenizer.from_pretrained(tiny_bert)
    assert any(s == "agent" for t in inputs.turns for s, _ in t.messages)
    for t in inputs.turns:  # agent turns kept, then cut from the oldest to the 64-token budget
        assert history[t.qid] == format_conversation(t.messages, tok, 64, with_agent=True)
    assert inputs.queries["govt"]["student:s"] == history  # the student reads the history text


@pytest.mark.parametrize("kw, error, message", [
    ({"query_forms": ["history", "student:s={tmp}/students/fold{{fold}}"], "retrievers": ["bm25"]}, ConfigError,
     r"need a SPLADE retriever"),
    ({"query_forms": ["student:s={tmp}/students/fold{{fold}}"], "folds": None}, ConfigError, r"set folds"),
    ({"query_forms": ["student:s={tmp}/students/fold{{fold}}"], "folds": 6}, DataError,
     r"fold5 is not a model folder .* for fold 5"),
    ({"query_forms": ["student:s={tmp}/nowhere"]}, DataError, r"nowhere is not a model folder"),
    ({"query_forms": ["rewrite:x={tmp}/missing.jsonl"]}, DataError, r"missing.jsonl"),
    ({"query_forms": ["rewrite:x={tmp}/short.jsonl"]}, DataError, r"no rewrite for \d+ evaluated turns"),
    ({"query_forms": ["rewrite:x={tmp}/two.jsonl"]}, DataError, r"two.jsonl:1: a rewrite must be one"),
    ({"retrievers": ["splade=index:{tmp}/no-index-{{domain}}"]}, DataError, r"no-index-govt is not a finished"),
])
def test_bad_arms_fail_before_ray(setup, tiny_bert, kw, error, message):
    tmp = setup["tmp"]
    turns = setup["turns"]
    (tmp / "short.jsonl").write_text(json.dumps({"_id": turns[0].qid, "text": "|user|: a"}) + "\n")
    (tmp / "two.jsonl").write_text("".join(json.dumps({"_id": t.qid, "text": "|user|: a\n|user|: b"}) + "\n"
                                           for t in turns))
    kw = {k: ([x.format(tmp=tmp) for x in v] if isinstance(v, list) else v) for k, v in kw.items()}
    cfg = _cfg(setup, tiny_bert, output_dir=str(tmp / "bad-out"), **kw)
    with pytest.raises(error, match=message):
        cfg.validate()
        load_inputs(cfg)
    assert not (tmp / "bad-out").exists()
