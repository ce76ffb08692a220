"""MLflow tracking in both modes: embedded SQLite store, and a real `mlflow server` on 127.0.0.1."""
import os
from pathlib import Path

import pytest
from mlflow import MlflowClient

from rayrag import tracking


def _log_a_job(tmp_path) -> str:
    art = tmp_path / "result.json"
    art.write_text('{"ok": 1}\n')
    with tracking.job_run("evaluate", {"dataset": "scifact", "options": {"k1": 0.9}, "retrievers": ["bm25"]},
                          dataset="scifact", experiment="t") as jr:
        jr.log_metrics({"bm25/ndcg@10": 0.5})
        jr.log_artifact(art)
        return jr.run_id


def _check_run(uri: str, run_id: str) -> None:
    client = MlflowClient(uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params == {"dataset": "scifact", "options.k1": "0.9", "retrievers": "bm25"}
    assert run.data.metrics == {"bm25/ndcg_at_10": 0.5}
    tags = run.data.tags
    assert tags["rayrag.job"] == "evaluate" and tags["rayrag.dataset"] == "scifact"
    assert len(tags["mlflow.source.git.commit"]) in (40, 7) or tags["mlflow.source.git.commit"] == "unknown"
    assert [a.path for a in client.list_artifacts(run_id)] == ["result.json"]


def test_embedded_sqlite_store_needs_no_server(tmp_path):
    run_id = _log_a_job(tmp_path)
    uri = tracking.tracking_uri()
    assert uri.startswith("sqlite:///") and uri.endswith("/mlflow/mlflow.db")
    home = Path(os.environ["RAYRAG_HOME"])
    assert Path(uri[len("sqlite:///"):]).is_file() and str(home) in uri
    _check_run(uri, run_id)
    # artifacts land under $RAYRAG_HOME, not the cwd
    assert list(home.rglob("result.json"))


def test_a_job_leaves_the_store_choice_to_rayrag_home(tmp_path, monkeypatch):
    _log_a_job(tmp_path)  # MLflow writes the uri into os.environ on set_tracking_uri
    assert "MLFLOW_TRACKING_URI" not in os.environ
    monkeypatch.setenv("RAYRAG_HOME", str(tmp_path / "later"))  # a later job in the same process
    assert tracking.tracking_uri() == f"sqlite:///{(tmp_path / 'later').resolve() / 'mlflow' / 'mlflow.db'}"


def test_failed_job_marks_the_run_failed(tmp_path):
    with pytest.raises(RuntimeError):
        with tracking.job_run("evaluate", {}, experiment="t") as jr:
            run_id = jr.run_id
            raise RuntimeError("boom")
    assert MlflowClient(tracking.tracking_uri()).get_run(run_id).info.status == "FAILED"


def test_tracking_server_via_MLFLOW_TRACKING_URI(tmp_path, monkeypatch, mlflow_server):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    run_id = _log_a_job(tmp_path)
    _check_run(mlflow_server, run_id)
    assert list((tmp_path / "server-artifacts").rglob("result.json")), "artifact went through the server"
    assert not (Path(os.environ["RAYRAG_HOME"]) / "mlflow").exists(), "nothing written to the embedded store"


def test_credentials_never_reach_mlflow_params(tmp_path):
    """A value under a credential's name is logged as REDACTED; the names of where keys live are not."""
    secret = "sk-do-not-log-me"
    config = {"auth": {"api_key": secret, "api_key_env": "RAYRAG_API_KEY", "api_key_file": "/etc/key"},
              "hf_token": secret, "db": {"password": secret}, "max_query_tokens": 64}
    with tracking.job_run("serve", config, experiment="t") as jr:
        run_id = jr.run_id
    params = MlflowClient(tracking.tracking_uri()).get_run(run_id).data.params
    assert secret not in "".join(params.values())
    assert params["auth.api_key"] == params["hf_token"] == params["db.password"] == tracking.REDACTED
    assert params["auth.api_key_env"] == "RAYRAG_API_KEY" and params["auth.api_key_file"] == "/etc/key"
    assert params["max_query_tokens"] == "64"
