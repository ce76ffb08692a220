"""rayrag's metrics against pytrec_eval (trec_eval) on a real BM25 run over SciFact test."""
import pytest
import pytrec_eval

from rayrag.errors import DataError
from rayrag.eval import evaluate, read_run, write_run
from rayrag.eval.metrics import evaluate_per_query, parse_metric, trec_order


@pytest.fixture(scope="module")
def bm25_run(scifact_test):
    from rayrag.search import build_retriever

    r = build_retriever("bm25")
    r.index(scifact_test.corpus)
    return r.search(scifact_test.queries, 100)


# rayrag metric -> pytrec_eval measure (and how to cut the run first, for MRR@k)
PAIRS = {"ndcg@10": "ndcg_cut_10", "ndcg@100": "ndcg_cut_100", "recall@10": "recall_10",
         "recall@100": "recall_100", "precision@5": "P_5", "map@100": "map_cut_100", "map": "map"}


def test_metrics_equal_trec_eval_per_query(scifact_test, bm25_run):
    ours = evaluate_per_query(scifact_test.qrels, bm25_run, list(PAIRS) + ["mrr@10"])
    as_dict = {q: {d: s for d, s in hits} for q, hits in bm25_run.items()}
    ref = pytrec_eval.RelevanceEvaluator(scifact_test.qrels, {"ndcg_cut", "recall", "P", "map_cut", "map"}).evaluate(as_dict)
    # trec_eval's recip_rank has no cutoff: cut each run to its trec-ordered top 10 first.
    cut10 = {q: {d: hits[d] for d in trec_order(hits)[:10]} for q, hits in as_dict.items()}
    ref_rr = pytrec_eval.RelevanceEvaluator(scifact_test.qrels, {"recip_rank"}).evaluate(cut10)
    assert set(ours) == set(ref) == set(scifact_test.qrels)
    for q in ref:
        for ours_name, ref_name in PAIRS.items():
            assert ours[q][ours_name] == pytest.approx(ref[q][ref_name], abs=1e-9), (q, ours_name)
        assert ours[q]["mrr@10"] == pytest.approx(ref_rr[q]["recip_rank"], abs=1e-9)
    mean = evaluate(scifact_test.qrels, bm25_run, ["ndcg@10"])["ndcg@10"]
    assert mean == pytest.approx(sum(v["ndcg_cut_10"] for v in ref.values()) / len(ref), abs=1e-12)


def test_graded_relevance_and_ties_follow_trec_eval():
    qrels = {"q": {"a": 2, "b": 1, "c": 0}}
    run = {"q": [("c", 1.0), ("b", 1.0), ("a", 0.5), ("z", 0.5)]}  # ties broken by docid desc
    ref = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut", "map_cut", "recip_rank"}).evaluate(
        {"q": dict(run["q"])})["q"]
    ours = evaluate(qrels, run, ["ndcg@5", "map@5", "mrr@5"])
    assert ours["ndcg@5"] == pytest.approx(ref["ndcg_cut_5"])
    assert ours["map@5"] == pytest.approx(ref["map_cut_5"])
    assert ours["mrr@5"] == pytest.approx(ref["recip_rank"])
    assert trec_order(run["q"]) == ["c", "b", "z", "a"]


def test_queries_missing_from_the_run_count_as_zero():
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}}
    assert evaluate(qrels, {"q1": [("a", 1.0)]}, ["recall@10"])["recall@10"] == 0.5


@pytest.mark.parametrize("name", ["ndcg", "bleu@4", "recall@0", "mrr@x"])
def test_bad_metric_names(name):
    with pytest.raises(ValueError):
        parse_metric(name)


def test_trec_run_file_round_trip(tmp_path, scifact_test, bm25_run):
    path = write_run(tmp_path / "runs" / "bm25.trec", bm25_run, tag="bm25")
    first = path.read_text().splitlines()[0].split()
    assert first[1] == "Q0" and first[3] == "1" and first[5] == "bm25"
    back = read_run(path)
    assert evaluate(scifact_test.qrels, back, ["ndcg@10"]) == pytest.approx(
        evaluate(scifact_test.qrels, bm25_run, ["ndcg@10"]), abs=1e-6)
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("text, message", [
    ("q1 Q0 d1 1 0.5\n", "expected 6 columns"),
    ("q1 Q0 d1 1 high tag\n", "score 'high' is not a number"),
    ("q1 Q0 d1 1 0.5 t\nq1 Q0 d1 2 0.4 t\n", "appears twice"),
])
def test_bad_run_files(tmp_path, text, message):
    (tmp_path / "r.trec").write_text(text)
    with pytest.raises(DataError, match=message):
        read_run(tmp_path / "r.trec")


def test_run_files_keep_scores_exactly(tmp_path):
    """Near-equal scores must not collapse into ties (which trec_eval would re-order by docid)."""
    run = {"q": [("a", 0.7000001), ("b", 0.70000005), ("c", 1e-12)]}
    back = read_run(write_run(tmp_path / "r.trec", run, tag="t"))
    assert back == run


def test_write_run_rejects_whitespace_ids_and_leaves_nothing(tmp_path):
    with pytest.raises(ValueError, match="whitespace"):
        write_run(tmp_path / "r.trec", {"q 1": [("d", 1.0)]}, tag="t")
    assert list(tmp_path.iterdir()) == []
