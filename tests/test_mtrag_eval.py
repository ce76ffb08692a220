"""The MTRAG evaluation end to end on real govt turns and a real slice of the govt pool, in a real
local Ray, tracked in a real MLflow store (a 1-layer SPLADE stands in for SPLADE-tiny)."""
import json
import shutil

import pytest
from mlflow import MlflowClient

from rayrag.data.mtrag import load_human_tasks
from rayrag.errors import ConfigError, DataError
from rayrag.eval import evaluate, read_run
from rayrag.eval.mtrag import MtragEvalConfig, run_mtrag_eval
from rayrag.search.options import RetrieverOptions


def _slice(data_dir, tmp_path, conversations=2, distractors=200):
    """Real files, smaller: govt's human tasks and the judged passages of the first
    ``conversations`` conversations plus the first ``distractors`` other pool passages."""
    src = data_dir / "mtrag"
    root = tmp_path / "mtrag"
    shutil.copytree(src / "mtrag-human" / "retrieval_tasks" / "govt", root / "mtrag-human" / "retrieval_tasks" / "govt")
    turns = load_human_tasks(src, ["govt"])
    convs = sorted({t.conversation_id for t in turns})[:conversations]
    judged = {p for t in turns if t.conversation_id in convs for p in t.qrels}
    # split on "\n" only: passages hold \x85 and \u2028, which splitlines() also breaks on
    lines = (src / "pool" / "corpus" / "govt.jsonl").read_text(encoding="utf-8").rstrip("\n").split("\n")
    keep = [ln for i, ln in enumerate(lines) if i < distractors or json.loads(ln)["_id"] in judged]
    (root / "pool" / "corpus").mkdir(parents=True)
    (root / "pool" / "corpus" / "govt.jsonl").write_text("\n".join(keep) + "\n", encoding="utf-8")
    return root, [t for t in turns if t.conversation_id in convs]


def test_mtrag_eval_end_to_end(tmp_path, data_dir, tiny_bert, ray_local):
    root, turns = _slice(data_dir, tmp_path)
    out = tmp_path / "out"
    cfg = MtragEvalConfig(dataset=str(root), output_dir=str(out), domains=["govt"], max_conversations=2,
                          retrievers=["bm25", f"tiny=splade:{tiny_bert}"], history_tokenizer=str(tiny_bert),
                          history_max_tokens=64, options=RetrieverOptions(sparse_max_length=64), num_cpus=2,
                          permutations=1000)
    result = run_mtrag_eval(cfg)
    assert result == json.loads((out / "result.json").read_text())
    assert result["num_turns"] == {"govt": len(turns), "all": len(turns)} and result["num_conversations"] == 2
    assert list(result["metrics"]) == ["bm25", "tiny"] and set(result["query_terms"]) == {"tiny"}
    assert result["history"]["truncated_turns"] > 0  # 64 tokens cannot hold the longer histories
    qrels = {t.qid: t.qrels for t in turns}
    for label, forms in result["metrics"].items():
        assert list(forms) == ["last_turn", "history", "rewrite"]
        for form, scopes in forms.items():
            rescored = evaluate(qrels, read_run(out / "runs" / f"{label}.{form}.trec"), cfg.metrics)
            for m, v in scopes["all"].items():
                assert rescored[m] == pytest.approx(v, abs=1e-6)
    for form, terms in result["query_terms"]["tiny"].items():
        assert terms["all"] > 0
    sig = result["significance"]["bm25"]["rewrite vs last_turn"]
    assert set(sig) == {"recall@10", "ndcg@10"} and 0 < sig["ndcg@10"]["all"]["p"] <= 1  # 2 conversations: exact
    rows = [json.loads(ln) for ln in (out / "per_turn.jsonl").read_text().splitlines()]
    assert len(rows) == len(turns) * 2 * 3
    assert all("query_terms" in r for r in rows if r["retriever"] == "tiny")

    client = MlflowClient(result["tracking_uri"])
    run = client.get_run(result["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["rayrag.job"] == "mtrag-eval"
    assert run.data.metrics["bm25/rewrite/all/ndcg_at_10"] == pytest.approx(result["metrics"]["bm25"]["rewrite"]["all"]["ndcg@10"])
    assert {"result.json", "per_turn.jsonl", "runs"} <= {a.path for a in client.list_artifacts(run.info.run_id)}


def test_bad_data_fails_before_ray_and_writes_nothing(tmp_path):
    bad = tmp_path / "mtrag" / "mtrag-human" / "retrieval_tasks" / "govt"
    bad.mkdir(parents=True)
    (bad / "govt_lastturn.jsonl").write_text('{"_id": "c<::>1", "text": "|user|: hi"}\n{oops\n')
    out = tmp_path / "out"
    with pytest.raises(DataError, match=r"govt_lastturn.jsonl:2: malformed JSON"):
        run_mtrag_eval(MtragEvalConfig(dataset=str(tmp_path / "mtrag"), output_dir=str(out), domains=["govt"],
                                       retrievers=["bm25"]))
    assert not out.exists()


@pytest.mark.parametrize("kw, message", [
    ({"query_forms": ["last_turn", "summary"]}, r"query_forms: unknown form 'summary'"),
    ({"query_forms": ["history", "history"]}, r"query_forms: duplicate forms"),
    ({"query_forms": []}, r"query_forms: give at least one form"),
    ({"query_forms": ["student:disco"]}, r"unknown form 'student:disco'"),
    ({"query_forms": ["student:=out/m"]}, r"unknown form"),
    ({"query_forms": ["student:a b=out/m"]}, r"the name may hold"),
    ({"query_forms": ["student:s=out/{domain}/m"]}, r"only \{fold\} may vary"),
    ({"query_forms": ["rewrite:gpt"]}, r"unknown form 'rewrite:gpt'"),
    ({"query_forms": ["last_turn", "rewrite"], "turns": "mtragun"}, r"mtragun-human has no rewrites"),
    ({"turns": "mtrag"}, r"turns must be one of"),
    ({"pairs": ["history - last_turn"]}, r"pairs: 'history - last_turn' must be"),
    ({"pairs": ["history vs student:x"]}, r"pairs: .* must be"),
    ({"pairs": ["history vs history"]}, r"pairs: .* must be"),
    ({"folds": 1}, r"folds must be >= 2"),
    ({"fold_domains": ["govt", "web"]}, r"fold_domains: give distinct values"),
    ({"domains": []}, r"domains: give distinct values"),
    ({"retrievers": ["bm25", "bm25"]}, r"duplicate names"),
    ({"retrievers": []}, r"give at least one retriever"),
    ({"retrievers": ["bm42"]}, r"unknown retriever 'bm42'"),
    ({"history_max_tokens": 512}, r"exceeds options.sparse_max_length \(256\)"),
    ({"significance_metrics": ["map@100"]}, r"significance_metrics \['map@100'\] must be among metrics"),
    ({"depth": 50}, r"recall@100 needs depth >= 100"),
    ({"depth": 0}, r"depth must be >= 1, got 0"),
    ({"metrics": ["ndcg"]}, r"metrics: metric 'ndcg' needs a cutoff"),
    ({"max_conversations": 0}, r"max_conversations must be >= 1"),
])
def test_bad_config(kw, message):
    with pytest.raises(ConfigError, match=message):
        MtragEvalConfig(**kw).validate()
