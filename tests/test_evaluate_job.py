"""The evaluate job end to end on real SciFact, in a real local Ray, tracked in a real MLflow store."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from rayrag.eval import evaluate, read_run

REPO = Path(__file__).resolve().parents[1]

def _run_job(args, env_extra, cwd=REPO, timeout=1200):
    env = dict(os.environ, **env_extra)
    return subprocess.run([sys.executable, "-m", "jobs.evaluate", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_evaluate_job_records_the_same_numbers_everywhere(tmp_path, data_dir, tiny_bert):
    """result.json, the TREC run files and the MLflow run agree (a fast model stands in for MiniLM)."""
    out = tmp_path / "out"
    proc = _run_job(["--dataset", "scifact", "--output-dir", str(out), "split=test",
                     f"retrievers=[bm25,tiny=dense:{tiny_bert},rrf(bm25,dense:{tiny_bert})]", "options.batch_size=128"],
                    {"RAYRAG_DATA_DIR": str(data_dir), "RAYRAG_HOME": os.environ["RAYRAG_HOME"]})
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "result.json").read_text())
    names = ["bm25", "tiny", f"rrf(bm25,dense:{tiny_bert})"]
    assert (result["dataset"], result["split"], list(result["metrics"])) == ("scifact", "test", names)
    assert result["retrievers"]["tiny"] == f"dense:{tiny_bert}"
    # the fusion ran in the task of the two it fuses, which encoded the corpus once
    assert result["tasks"] == [{"retrievers": names, "indexed": ["bm25", f"dense:{tiny_bert}"]}]
    assert 0.655 <= result["metrics"]["bm25"]["ndcg@10"] <= 0.685
    assert "ndcg@10" in proc.stdout and "bm25" in proc.stdout  # the printed table

    from rayrag.data import load_beir

    qrels = load_beir(data_dir / "scifact", "test").qrels
    client = MlflowClient(result["tracking_uri"])
    run = client.get_run(result["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["dataset"] == "scifact" and run.data.tags["rayrag.job"] == "evaluate"
    assert run.data.tags["rayrag.dataset"] == "scifact"
    arts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"result.json", "runs", "plots"} <= arts
    run_files = sorted((out / "runs").glob("*.trec"))
    assert len(run_files) == 3
    assert {a.path for a in client.list_artifacts(run.info.run_id, "runs")} == {f"runs/{p.name}" for p in run_files}
    for name, metrics in result["metrics"].items():
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        rescored = evaluate(qrels, read_run(out / "runs" / f"{safe}.trec"), list(metrics))
        for m, v in metrics.items():
            assert rescored[m] == pytest.approx(v, abs=1e-5)
            key = "".join(c if c.isalnum() or c in "_-./ " else "_" for c in f"{name}/{m.replace('@', '_at_')}")
            assert run.data.metrics[key] == pytest.approx(v)


def test_bad_dataset_fails_before_ray_and_writes_nothing(tmp_path):
    bad = tmp_path / "data" / "broken"
    (bad / "qrels").mkdir(parents=True)
    (bad / "corpus.jsonl").write_text('{"_id": "d1", "text": "x"}\n{oops\n')
    (bad / "queries.jsonl").write_text('{"_id": "q1", "text": "x"}\n')
    (bad / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    out = tmp_path / "out"
    proc = _run_job(["--dataset", "broken", "--output-dir", str(out), "retrievers=[bm25]"],
                    {"RAYRAG_DATA_DIR": str(tmp_path / "data"), "RAYRAG_HOME": os.environ["RAYRAG_HOME"]},
                    timeout=120)
    assert proc.returncode == 2
    assert "corpus.jsonl:2: malformed JSON" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()


def test_job_reuses_a_running_ray_and_leaves_it_running(tmp_path, data_dir, ray_local):
    """The path `ray job submit` takes: Ray is already initialised, so the job must not shut it down."""
    import ray

    from rayrag.eval.job import EvaluateConfig
    from rayrag.eval.job import run_evaluate

    node = ray.get_runtime_context().get_node_id()
    cfg = EvaluateConfig(data_dir=str(data_dir), output_dir=str(tmp_path / "o"), retrievers=["bm25"])
    result = run_evaluate(cfg)
    assert ray.is_initialized() and ray.get_runtime_context().get_node_id() == node
    assert 0.655 <= result["metrics"]["bm25"]["ndcg@10"] <= 0.685
    assert (tmp_path / "o" / "runs" / "bm25.trec").is_file()


def test_rerank_reorders_the_top_by_the_rerankers_scores(tmp_path, data_dir, tiny_reranker, ray_local):
    from rayrag.config import load_config
    from rayrag.data import load_beir
    from rayrag.eval.job import EvaluateConfig
    from rayrag.eval.job import run_evaluate
    from rayrag.models.reranker import load_reranker

    out = tmp_path / "out"
    cfg = load_config(EvaluateConfig, None, [f"data_dir={data_dir}", f"output_dir={out}", "retrievers=[bm25]",
                                             f"rerank={tiny_reranker}", "rerank_depth=5", "num_cpus=2",
                                             "cpus_per_retriever=2", "rerank_interpolate=[0.5]"])
    result = run_evaluate(cfg)
    assert list(result["metrics"]) == ["bm25", "bm25>>rerank", "bm25>>rerank+first@0.5"]
    first, reranked = read_run(out / "runs" / "bm25.trec"), read_run(out / "runs" / "bm25__rerank.trec")
    [both_file] = set((out / "runs").glob("*.trec")) - {out / "runs" / "bm25.trec", out / "runs" / "bm25__rerank.trec"}
    both = read_run(both_file)
    # below the reranked depth nothing moves, so recall@100 is the first stage's
    assert result["metrics"]["bm25>>rerank"]["recall@100"] == pytest.approx(result["metrics"]["bm25"]["recall@100"])
    ds = load_beir(data_dir / "scifact", "test")
    reranker = load_reranker(str(tiny_reranker))
    for qid in sorted(ds.queries)[:5]:
        head = [d for d, _ in first[qid][:5]]
        scores = reranker.score(ds.queries[qid], [ds.corpus[d].full_text for d in head])
        expected = [d for _, d in sorted(zip(-scores, head))]
        assert [d for d, _ in reranked[qid][:5]] == expected
        assert [d for d, _ in reranked[qid][5:]] == [d for d, _ in first[qid][5:]]
        # the interpolated row: half min-max(reranker) + half min-max(BM25) over the same top 5
        norm = lambda v: (v - v.min()) / (v.max() - v.min())  # noqa: E731
        fused = 0.5 * norm(scores.astype(float)) + 0.5 * norm(np.array([s for _, s in first[qid][:5]]))
        expected = [d for _, d in sorted(zip(-fused, head))]
        assert [d for d, _ in both[qid][:5]] == expected
        assert [d for d, _ in both[qid][5:]] == [d for d, _ in first[qid][5:]]
    assert result["reranker"] == {"model": str(tiny_reranker), "depth": 5, "interpolate": [0.5]}


def test_bad_rerank_settings_fail_before_ray(tmp_path):
    from rayrag.config import load_config
    from rayrag.errors import ConfigError
    from rayrag.eval.job import EvaluateConfig

    with pytest.raises(ConfigError, match="rerank_depth"):
        load_config(EvaluateConfig, None, ["rerank=minilm", "rerank_depth=0"])
    with pytest.raises(ConfigError, match="give a reranker model"):
        load_config(EvaluateConfig, None, ["rerank=' '"])
    with pytest.raises(ConfigError, match="weights must be in"):
        load_config(EvaluateConfig, None, ["rerank=minilm", "rerank_interpolate=[1.5]"])
    with pytest.raises(ConfigError, match="needs a reranker"):
        load_config(EvaluateConfig, None, ["rerank_interpolate=[0.5]"])


def test_retriever_options_and_paired_tests_by_query(tmp_path, data_dir, ray_local):
    """Per-label options reach their retriever alone; each pair's p is the paired randomization test
    on the per-query scores of the run files written (each query its own unit)."""
    from rayrag.config import load_config
    from rayrag.data import load_beir
    from rayrag.eval.metrics import evaluate_per_query
    from rayrag.eval.job import EvaluateConfig, run_evaluate
    from rayrag.eval.significance import paired_randomization_test

    out = tmp_path / "out"
    cfg = load_config(EvaluateConfig, None, [
        f"data_dir={data_dir}", f"output_dir={out}", "retrievers=[bm25,same=bm25,tf=bm25]", "num_cpus=2",
        "retriever_options={tf: {bm25_k1: 0.1, bm25_b: 0.0}}", "pairs=[bm25 vs tf,bm25 vs same]",
        "permutations=2000", "metrics=[ndcg@10,recall@100]"])
    result = run_evaluate(cfg)
    runs = {n: read_run(out / "runs" / f"{n}.trec") for n in ("bm25", "same", "tf")}
    assert runs["same"] == runs["bm25"] and runs["tf"] != runs["bm25"]  # the override reached "tf" only
    assert result["retriever_options"] == {"tf": {"bm25_k1": 0.1, "bm25_b": 0.0}}
    qrels = load_beir(data_dir / "scifact", "test").qrels
    per = {n: evaluate_per_query(qrels, r, ["ndcg@10", "recall@100"]) for n, r in runs.items()}
    qids = sorted(per["bm25"])
    assert len(qids) == 300
    for m in ("ndcg@10", "recall@100"):
        t = result["significance"]["bm25 vs tf"][m]
        a, b = [per["bm25"][q][m] for q in qids], [per["tf"][q][m] for q in qids]
        assert t["a"] == pytest.approx(result["metrics"]["bm25"][m])
        assert t["mean_diff"] == pytest.approx(np.mean(a) - np.mean(b))
        assert t["p"] == pytest.approx(paired_randomization_test(a, b, qids, 2000, 0))
        assert result["significance"]["bm25 vs same"][m] == {"a": t["a"], "b": t["a"], "mean_diff": 0.0, "p": 1.0}
    assert result["significance"]["bm25 vs tf"]["ndcg@10"]["p"] < 0.05  # k1 0.1, b 0 is a much worse BM25


def test_bad_pairs_and_retriever_options_fail_before_ray(tmp_path):
    from rayrag.config import load_config
    from rayrag.errors import ConfigError
    from rayrag.eval.job import EvaluateConfig

    for retrievers, match in [("[]", "give at least one retriever"), ("[bm25,bm25=bm25]", "duplicate names")]:
        with pytest.raises(ConfigError, match=match):
            load_config(EvaluateConfig, None, [f"retrievers={retrievers}"])
    base = ["retrievers=[bm25,b2=bm25]"]
    for extra, match in [
        (["retriever_options={nope: {bm25_k1: 1.0}}"], r"retriever_options: no retriever labelled \['nope'\]"),
        (["retriever_options={b2: {bm25_k2: 1.0}}"], r"unknown config key\(s\) retriever_options\.b2\.bm25_k2"),
        (["retriever_options={b2: {cot: long}}"], "options.cot must be"),
        (["retriever_options={b2: 3}"], "expected a mapping"),
        (["retriever_options={off: {bm25_k1: 1.0}}"], "labels must be strings, got \\[False\\]"),
        (["pairs=[bm25 - b2]"], "pairs: 'bm25 - b2' must be"),
        (["pairs=[bm25 vs bm25]"], "pairs: .* must be"),
        (["pairs=[bm25 vs x]"], "pairs: .* must be"),
        (["pairs=[bm25 vs b2,bm25 vs b2]"], "pairs: duplicates"),
        (["permutations=0"], "permutations must be >= 1"),
    ]:
        with pytest.raises(ConfigError, match=match):
            load_config(EvaluateConfig, None, base + extra)
    # rerank rows can be paired
    cfg = load_config(EvaluateConfig, None, base + ["rerank=minilm", "pairs=[bm25>>rerank vs bm25]"])
    assert cfg.labels() == ["bm25", "bm25>>rerank", "b2", "b2>>rerank"]


def test_a_fusion_shares_a_task_with_the_retrievers_it_fuses():
    from rayrag.eval.job import task_groups
    from rayrag.search.options import RetrieverOptions

    o, other = RetrieverOptions(), RetrieverOptions(bm25_k1=0.1)
    quickstart = [("bm25", "bm25"), ("minilm", "index:/flat"), ("minilm+hnsw", "index:/hnsw"),
                  ("splade", "index:/sparse"), ("hybrid", "hybrid(bm25,index:/flat)"), ("rrf", "rrf(bm25,index:/flat)")]
    assert task_groups(quickstart, [o] * 6) == [[0, 1, 4, 5], [2], [3]]
    # without a fusion every retriever keeps a task of its own, even two rows of the same one
    assert task_groups([("a", "bm25"), ("b", "bm25"), ("c", "minilm")], [o] * 3) == [[0], [1], [2]]
    # a component is shared only with the same options; nested fusions open up
    assert task_groups([("a", "bm25"), ("tf", "bm25"), ("h", "hybrid(bm25,minilm)")], [o, other, other]) == [[0], [1, 2]]
    assert task_groups([("m", "minilm"), ("n", "rrf(bm25,hybrid(splade-tiny,minilm))")], [o, o]) == [[0, 1]]


def test_shared_components_are_indexed_once_and_rank_as_when_built_alone(data_dir, tiny_bert):
    """The task of a group (run here as a plain function) gives every row the run it gets from a
    retriever built and indexed on its own."""
    from rayrag.data import load_beir
    from rayrag.eval.job import _retrieve
    from rayrag.search.options import RetrieverOptions
    from rayrag.search.registry import build_retriever

    ds = load_beir(data_dir / "scifact", "test")
    queries = {q: ds.queries[q] for q in sorted(ds.queries)[:20]}
    keep = sorted({d for q in queries for d in ds.qrels[q]} | set(sorted(ds.corpus)[:300]))
    corpus = {d: ds.corpus[d] for d in keep}
    dense = f"dense:{tiny_bert}"
    o = RetrieverOptions(batch_size=64, fusion_depth=50)
    entries = [("h", f"hybrid(bm25,{dense})", o), ("bm25", "bm25", o), ("same", "bm25", o), ("tiny", dense, o),
               ("r", f"rrf(bm25,{dense})", o)]
    got = _retrieve(entries, corpus, queries, 20, threads=1)
    # two components for five rows; the second bm25 row is an object of its own (its stats count apart)
    assert got["indexed"] == ["bm25", dense, "bm25"]
    for label, spec, options in entries:
        alone = build_retriever(spec, options)
        alone.index(corpus)
        assert got["rows"][label][0] == alone.search(queries, 20), label
    assert got["rows"]["h"][1]["index_s"] == pytest.approx(got["rows"]["bm25"][1]["index_s"] + got["rows"]["tiny"][1]["index_s"])
