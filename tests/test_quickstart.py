"""The README's first command, as a user runs it, on real SciFact.

`bash scripts/quickstart.sh` in a venv that holds only the main dependencies (scripts/setup.sh
without the test extra, in `.venv-main`): Ray Data encode -> FAISS / inverted index -> evaluate
-> Ray Serve and one /search over HTTP -> the table and what to run next, exit code 0. This is
the one multi-minute test; it checks the published reference numbers and the encode/index
acceptance figures in a single run. A library import of a test-only package fails it, as it
would fail a user. By default it starts after the two-node cluster test, beside the rest of the
suite at the lowest CPU priority, and this test runs last and waits for it
(tests/quickstart_run.py); RAYRAG_QUICKSTART_BACKGROUND=0 runs it here, alone.
"""
import ast
import json
import subprocess
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests import quickstart_run

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.e2e
@pytest.mark.timeout(quickstart_run.TIMEOUT_S + 300)
def test_quickstart_reproduces_published_numbers(data_dir):
    qs = quickstart_run.start(data_dir)  # or joins the run conftest.py started beside the suite
    returncode, stdout, stderr = qs.wait()
    out, venv = qs.out, qs.venv
    assert returncode == 0, stdout[-2000:] + stderr[-3000:]
    # that venv has the main dependencies only: none of the test extra
    for test_only in ("pytest", "pytrec_eval", "openai", "deptry"):
        probe = subprocess.run([str(venv / "bin" / "python"), "-c", f"import {test_only}"], capture_output=True)
        assert probe.returncode != 0, f"{test_only} is installed in {venv}: not a main-only environment"
    result = json.loads((out / "evaluate" / "result.json").read_text())
    ndcg = {name: m["ndcg@10"] for name, m in result["metrics"].items()}
    # published: BM25 0.665-0.679 (Pyserini), all-MiniLM-L6-v2 0.645 (MTEB), SPLADE-tiny 0.6436
    assert 0.655 <= ndcg["bm25"] <= 0.685, ndcg
    assert abs(ndcg["minilm"] - 0.645) <= 0.005, ndcg
    assert abs(ndcg["splade-tiny"] - 0.64) <= 0.01, ndcg
    assert abs(ndcg["minilm+hnsw"] - ndcg["minilm"]) <= 0.005, ndcg
    assert ndcg["hybrid(bm25,minilm)"] > max(ndcg["bm25"], ndcg["minilm"]), ndcg
    # and exactly the README's table, to its 4 decimals: a refactor that moves a figure shows here
    readme = _readme_table()
    assert set(readme) == set(result["metrics"]), (sorted(readme), sorted(result["metrics"]))
    for name, (want_ndcg, want_recall) in readme.items():
        got = result["metrics"][name]
        assert (round(got["ndcg@10"], 4), round(got["recall@100"], 4)) == (want_ndcg, want_recall), (name, got)
    # it ends with the table (once) and what to run next
    tail = stdout.rsplit("[quickstart] POST", 1)[1]
    assert stdout.count("scifact / test  (300 queries") == 1 and "minilm+hnsw" in tail, stdout[-3000:]
    assert "Next (after `source .venv/bin/activate`)" in tail and "python -m jobs.serve run" in tail
    assert stdout.rstrip().endswith("docs/SERVE.md"), stdout[-500:]
    # it ends by serving the Flat index: a sample answer over HTTP and a curl line to paste
    served = stdout.split("[quickstart] 5/5 serve", 1)[1]
    port = int(served.split("POST http://127.0.0.1:", 1)[1].split("/", 1)[0])  # serve_port=0: any free one
    assert f"curl -s http://127.0.0.1:{port}/search -H 'Content-Type: application/json' -d " in served
    assert "no reranker is served" in served  # nothing untrained is served
    corpus_ids = {json.loads(line)["_id"] for line in (data_dir / "scifact" / "corpus.jsonl").open()}
    answered = [line.split("[", 1)[1].split("]", 1)[0] for line in served.splitlines() if line.startswith("  1. [")]
    assert len(answered) == 1 and answered[0] in corpus_ids, served[:2000]

    run = MlflowClient(result["tracking_uri"]).get_run(result["mlflow_run_id"])
    assert run.data.metrics["bm25/ndcg_at_10"] == pytest.approx(ndcg["bm25"])
    assert run.data.metrics["minilm/ndcg_at_10"] == pytest.approx(ndcg["minilm"])
    # lineage: the index manifest points at the encode run, which produced the embeddings
    index_manifest = json.loads((out / "index-hnsw" / "manifest.json").read_text())
    encode_manifest = json.loads((out / "encode-dense" / "manifest.json").read_text())
    assert index_manifest["encode_run_id"] == encode_manifest["mlflow_run_id"]
    assert index_manifest["model_version"] == encode_manifest["model_version"]
    assert encode_manifest["count"] == 5183
    qs.cleanup()


@pytest.mark.parametrize("port", [-1, 65536])
def test_a_serve_port_that_is_no_tcp_port_is_refused(port):
    from rayrag.errors import ConfigError
    from rayrag.quickstart import QuickstartConfig

    QuickstartConfig(serve_port=0).validate()  # 0: any free port, picked when serving starts
    with pytest.raises(ConfigError, match="serve_port must be a TCP port"):
        QuickstartConfig(serve_port=port).validate()


def test_a_busy_serve_port_is_refused_before_any_work(data_dir, tmp_path):
    import socket

    from rayrag.errors import ConfigError
    from rayrag.quickstart import QuickstartConfig, run_quickstart

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        cfg = QuickstartConfig(data_dir=str(data_dir), output_dir=str(tmp_path / "qs"), serve_port=port)
        with pytest.raises(ConfigError, match=f"serve_port {port} on 127.0.0.1 is in use.*serve_port=0"):
            run_quickstart(cfg)
    assert not (tmp_path / "qs").exists()  # refused before the first step wrote anything


def test_a_serving_failure_still_shows_the_finished_evaluation(tmp_path, capsys, monkeypatch):
    """Step 5 failing (here: its port taken while steps 1-4 ran) must not hide steps 1-4's table."""
    from rayrag import quickstart
    from rayrag.quickstart import QuickstartConfig

    def port_taken(cfg, index):
        raise OSError(98, "Address already in use")

    monkeypatch.setattr(quickstart, "_serve", port_taken)  # Serve itself is tested in tests/test_serve*.py
    result = {"dataset": "scifact", "split": "test", "num_queries": 300, "num_docs": 5183,
              "metrics": {"bm25": {"ndcg@10": 0.6651, "recall@100": 0.9253}},
              "mlflow_run_id": "abc123", "tracking_uri": "http://127.0.0.1:5000"}
    cfg = QuickstartConfig(output_dir=str(tmp_path / "qs"))
    with pytest.raises(OSError, match="Address already in use"):
        quickstart._serve_or_report(cfg, result, tmp_path / "qs" / "index-flat")
    out = capsys.readouterr().out
    assert "scifact / test  (300 queries" in out and "0.6651" in out and "MLflow run abc123" in out
    assert out.rstrip().endswith(f"the evaluation above is complete in {cfg.output_dir}/evaluate/")
    assert "serve" not in result  # nothing claims a server that never answered


def _readme_table() -> dict[str, tuple[float, float]]:
    """The quickstart's figures as README.md publishes them: retriever -> (nDCG@10, Recall@100)."""
    text = (REPO / "README.md").read_text().split("## What the quickstart does", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 4 and cells[0].startswith("`") and cells[2][:2] == "0.":
            rows[cells[0].strip("`")] = (float(cells[2]), float(cells[3]))
    return rows


def test_no_test_starts_a_process_in_a_session_of_its_own():
    """A new session is a CPU group of its own beside the suite's, which holds the quickstart, so
    nice 19 would no longer keep the quickstart off it (tests/quickstart_run.py): tests start
    their processes with process_group=0 instead."""
    tests = Path(__file__).resolve().parent
    found = [f"{path.relative_to(tests)}:{node.lineno}" for path in sorted(tests.rglob("*.py"))
             for node in ast.walk(ast.parse(path.read_text()))
             if isinstance(node, ast.Call) and any(k.arg == "start_new_session" for k in node.keywords)]
    assert found == [], f"start_new_session=... in {found}: use process_group=0"
