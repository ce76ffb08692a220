"""Serve config file, config validation, API keys, artifact loading (local, runs:/, models:/): no Serve needed."""
import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from rayrag.errors import ConfigError, DataError, ModelNotFoundError
from rayrag.serve.config import ServeConfig
from tests.serve_fixtures import make_corpus, make_index

REPO = Path(__file__).resolve().parents[1]
SERVE_CONFIGS = sorted((REPO / "jobs" / "configs" / "serve").glob("*.yaml"))


def test_there_is_a_serve_config():
    assert [p.name for p in SERVE_CONFIGS] == ["scifact.yaml"]


@pytest.mark.parametrize("path", SERVE_CONFIGS, ids=lambda p: p.name)
def test_serve_config_is_in_sync_with_its_args(path):
    """The file equals what `rayrag serve build` makes from its own args (deployments, batching, header)."""
    from rayrag.serve.serve_yaml import http_options, read, render

    rel = str(path.relative_to(REPO))
    doc, cfg = read(path)
    assert http_options(doc) == ("127.0.0.1", 8000)
    assert render(cfg, rel, *http_options(doc)) == path.read_text(), (
        f"{rel} is out of date: python -m jobs.serve build --config {rel} --output {rel}")
    assert path.read_text().splitlines()[0] == f"# serve run {rel}"


def test_build_command_prints_the_file():
    rel = "jobs/configs/serve/scifact.yaml"
    out = subprocess.run([sys.executable, "-m", "jobs.serve", "build", "--config", rel], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout == (REPO / rel).read_text()


def test_the_ingress_module_imports_no_torch():
    """An ingress with its retriever a hop away holds no model: its replicas start without torch."""
    code = ("import sys; import rayrag.serve.app; from rayrag.errors import UntrainedReranker; "
            "print(sorted(m for m in ('torch', 'transformers', 'faiss') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr[-2000:]
    from rayrag.models.reranker import UntrainedReranker as FromModels
    from rayrag.errors import UntrainedReranker
    assert FromModels is UntrainedReranker  # one class, whichever import a caller uses


def test_overrides_reach_the_deployments(tmp_path):
    from rayrag.serve.serve_yaml import read, serve_config

    _, cfg = read(REPO / "jobs/configs/serve/scifact.yaml",
                  ["retriever.autoscaling.max_replicas=4", "retriever.max_batch_size=1",
                   "retriever.batch_wait_timeout_s=0.005", "reranker=null"])
    deps = {d["name"]: d for d in serve_config(cfg)["applications"][0]["deployments"]}
    assert set(deps) == {"Ingress", "Retriever"}  # no reranker, no Reranker deployment
    r = deps["Retriever"]
    assert "num_replicas" not in r and r["autoscaling_config"]["max_replicas"] == 4
    assert {k: r["user_config"][k] for k in ("max_batch_size", "batch_wait_timeout_s", "torch_threads")} == {
        "max_batch_size": 1, "batch_wait_timeout_s": 0.005, "torch_threads": 1}
    # the index section rides in the Retriever's user_config, not in args: a change is swapped in place
    assert r["user_config"]["index"] == cfg.index and "index" not in serve_config(cfg)["applications"][0]["args"]
    # one access-log line per HTTP request, written by the ingress; the model calls behind it log none
    assert deps["Ingress"]["logging_config"] == {"enable_access_log": True}
    assert r["logging_config"] == {"enable_access_log": False}


def test_the_retriever_inside_the_ingress_is_one_deployment_and_its_file_reads_back(tmp_path):
    """retriever_in_ingress: no Retriever deployment; the Ingress takes the retriever's sizing and
    the index section in its user_config (swapped in place there), and keeps its HTTP settings."""
    from rayrag.serve.serve_yaml import app_config, read, serve_config

    _, cfg = read(REPO / "jobs/configs/serve/scifact.yaml",
                  ["retriever_in_ingress=true", "retriever.num_cpus=1.5", "retriever.max_batch_size=4",
                   "index=/data/idx", "ingress.max_ongoing_requests=300"])
    app = serve_config(cfg)["applications"][0]
    (ingress,) = app["deployments"]
    assert ingress["name"] == "Ingress" and ingress["ray_actor_options"] == {"num_cpus": 1.5}
    assert ingress["max_ongoing_requests"] == 300 and ingress["logging_config"] == {"enable_access_log": True}
    assert ingress["user_config"]["index"] == "/data/idx" and ingress["user_config"]["max_batch_size"] == 4
    assert "index" not in app["args"] and app["args"]["retriever_in_ingress"] is True
    assert app_config(app) == cfg
    with pytest.raises(ConfigError, match="retriever_in_ingress: expected true/false"):
        read(REPO / "jobs/configs/serve/scifact.yaml", ["retriever_in_ingress=sometimes"])


def test_a_partial_section_keeps_that_sections_defaults(tmp_path):
    """`ingress: {num_cpus: ...}` must not turn the ingress into a model deployment's defaults."""
    from rayrag.serve.serve_yaml import read

    path = tmp_path / "serve.yaml"
    path.write_text(yaml.safe_dump({"applications": [{"name": "x", "import_path": "rayrag.serve.app:build_app",
                                                      "args": {"index": "idx", "ingress": {"num_cpus": 0.2},
                                                               "rerank": {"num_cpus": 1.0}}}]}))
    _, cfg = read(path, [])
    assert (cfg.ingress.num_cpus, cfg.ingress.access_log, cfg.ingress.max_batch_size) == (0.2, True, 1)
    assert cfg.ingress.max_ongoing_requests == 256
    assert (cfg.rerank.num_cpus, cfg.rerank.max_batch_size, cfg.rerank.access_log) == (1.0, 8, False)


@pytest.mark.parametrize("overrides, message", [
    (["nope=1"], "unknown config key(s) nope"),
    (["limits.max_k=0"], "limits.max_k must be >= 1"),
    (["default_k=500"], "default_k must be in [1, limits.max_k=100]"),
    (["retriever.max_batch_size=0"], "retriever: max_batch_size >= 1"),
    (["retriever.autoscaling.min_replicas=3", "retriever.autoscaling.max_replicas=2"], "min_replicas <= max_replicas"),
    (["index="], "index is required"),
    (["limits.max_k=ten"], "limits.max_k: expected an integer"),
    # beyond ingress.max_ongoing_requests Serve queues requests the admission gate never sees
    (["admission.max_concurrent_requests=256"], "admission.max_concurrent_requests must be in [1, "
                                                "ingress.max_ongoing_requests=256)"),
    (["admission.body_timeout_s=0"], "body_timeout_s > 0"),
    (["admission.max_body_bytes=0"], "max_body_bytes >= 1"),
    (["shard_actor_cpus=0"], "shard_actor_cpus must be > 0"),
])
def test_bad_serve_configs_are_rejected(overrides, message):
    from rayrag.serve.serve_yaml import read

    with pytest.raises(ConfigError, match=__import__("re").escape(message)):
        read(REPO / "jobs/configs/serve/scifact.yaml", overrides)


def test_register_adds_the_serve_command():
    from rayrag.serve.cli import cmd_run, register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["serve", "run", "--port", "9000", "index=/x", "retriever.num_replicas=2"])
    assert (args.func, args.port, args.overrides) == (cmd_run, 9000, ["index=/x", "retriever.num_replicas=2"])


@pytest.mark.parametrize("flag, from_file, any_free, port", [
    (None, 8000, True, 8000), (9000, 8000, True, 9000), (0, 8000, True, 0), (None, 8000, False, 8000)])
def test_the_http_port_is_the_flag_0_included_else_the_files(flag, from_file, any_free, port):
    from rayrag.serve.cli import _port

    assert _port(flag, from_file, any_free) == port


@pytest.mark.parametrize("argv, message", [
    (["run", "--port", "-1"], r"HTTP port must be in \[0, 65535\] \(0: any free port\), got -1"),
    (["run", "--port", "65536"], r"HTTP port must be in \[0, 65535\]"),
    # a written config file needs the port its clients will use, not "any"
    (["build", "--port", "0"], r"HTTP port must be in \[1, 65535\], got 0"),
])
def test_a_port_that_is_no_tcp_port_is_refused(argv, message, capsys):
    from rayrag.serve.cli import main

    assert main(["serve", *argv, "--config", str(REPO / "jobs/configs/serve/scifact.yaml")]) == 2
    assert __import__("re").search(message, capsys.readouterr().err)


def test_serve_run_on_a_port_in_use_stops_before_ray_starts():
    import os
    import socket

    env = {k: v for k, v in os.environ.items() if k not in ("RAYRAG_API_KEY", "RAY_ADDRESS")}
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "jobs.serve", "run", "--config", "jobs/configs/serve/scifact.yaml",
                               "--port", str(port), "--no-block"], cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"HTTP port {port} on 127.0.0.1 is in use" in proc.stderr and "--port 0 for any free port" in proc.stderr
    assert "Traceback" not in proc.stderr and "Started a local Ray instance" not in proc.stdout + proc.stderr


def test_api_key_sources(tmp_path, monkeypatch):
    from rayrag.serve.auth import KeyCheck, load_key
    from rayrag.serve.config import Auth
    from rayrag.serve.errors import ApiError
    from fastapi.security import HTTPAuthorizationCredentials

    monkeypatch.setenv("K_ENV", "from-env")
    assert load_key(Auth(api_key_env="K_ENV")) == b"from-env"
    (tmp_path / "key").write_text("from-file\n")
    assert load_key(Auth(api_key_env="K_ENV", api_key_file=str(tmp_path / "key"))) == b"from-file"
    monkeypatch.delenv("K_ENV")
    assert load_key(Auth(api_key_env="K_ENV")) is None  # optional: open access
    with pytest.raises(ConfigError, match="auth.required"):
        load_key(Auth(api_key_env="K_ENV", required=True))
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        load_key(Auth(api_key_file=str(tmp_path / "empty")))
    check = KeyCheck(b"abc")
    check(HTTPAuthorizationCredentials(scheme="Bearer", credentials="abc"))
    for creds in (None, HTTPAuthorizationCredentials(scheme="Bearer", credentials="abd")):
        with pytest.raises(ApiError) as e:
            check(creds)
        assert e.value.status == 401


def test_pickled_weights_are_refused(tmp_path, tiny_bert):
    from rayrag.serve.artifacts import check_safe_weights, model_ref

    check_safe_weights(tiny_bert)  # safetensors
    (tmp_path / "config.json").write_text((tiny_bert / "config.json").read_text())
    (tmp_path / "pytorch_model.bin").write_bytes(b"not even read")
    with pytest.raises(ModelNotFoundError, match="pickled"):
        model_ref(str(tmp_path))


@pytest.fixture(scope="module")
def tiny_index(tmp_path_factory, data_dir, tiny_bert):
    root = tmp_path_factory.mktemp("serve-cfg")
    corpus = make_corpus(data_dir, root, n=40)
    return make_index(tiny_bert, corpus, root / "index"), corpus


def test_corpus_must_be_the_indexed_one(tiny_index, tmp_path):
    from rayrag.serve.engine import SearchEngine

    index, corpus = tiny_index
    other = tmp_path / "corpus.jsonl"
    other.write_text(corpus.read_text().replace("a", "b", 1))
    with pytest.raises(DataError, match="sha256 mismatch"):
        SearchEngine(ServeConfig(index=str(index), corpus=str(other)))
    with pytest.raises(DataError, match="no such file"):
        SearchEngine(ServeConfig(index=str(tmp_path / "missing")))


def test_index_from_mlflow_run_and_registry(tiny_index):
    """runs:/ and models:/ references download the index from MLflow and serve the same results."""
    import mlflow

    from rayrag import tracking
    from rayrag.serve.engine import SearchEngine

    index, corpus = tiny_index
    exp = tracking.setup("serve-test")
    with mlflow.start_run(experiment_id=exp) as run:
        mlflow.log_artifacts(str(index), "index")
    local = SearchEngine(ServeConfig(index=str(index)))
    expected = local.search(["protein folding"], 5)
    from_run = SearchEngine(ServeConfig(index=f"runs:/{run.info.run_id}/index", corpus=str(corpus)))
    assert from_run.search(["protein folding"], 5) == expected
    # a plain artifact folder (not an MLflow-flavoured model) is registered by its source URI
    client = mlflow.MlflowClient()
    client.create_registered_model("tiny-index")
    version = client.create_model_version("tiny-index", source=f"{run.info.artifact_uri}/index",
                                          run_id=run.info.run_id).version
    from_registry = SearchEngine(ServeConfig(index=f"models:/tiny-index/{version}", corpus=str(corpus)))
    assert from_registry.search(["protein folding"], 5) == expected
    assert np.allclose(from_registry.embed(["x"])[0], local.embed(["x"])[0])
