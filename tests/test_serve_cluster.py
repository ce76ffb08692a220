"""`serve deploy` of the repo's Serve config file to a running `ray start --head` cluster
(127.0.0.1, token auth), as a user would, then a query over HTTP."""
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port, stop_process_tree, wait_for_http
from tests.serve_fixtures import make_corpus, make_index, make_reranker

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.mark.e2e
def test_serve_deploy_of_the_repo_config_to_a_ray_start_cluster(tmp_path, data_dir, tiny_bert):
    corpus = make_corpus(data_dir, tmp_path, n=60)
    index = make_index(tiny_bert, corpus, tmp_path / "index")
    reranker = make_reranker(tiny_bert, tmp_path / "reranker", corpus)
    http, gcs, dash = free_port(), free_port(), free_port()
    config = tmp_path / "serve.yaml"
    # the repo's file with this test's artifacts and port: everything else as shipped
    build = subprocess.run([sys.executable, "-m", "jobs.serve", "build", "--config", "jobs/configs/serve/scifact.yaml",
                            "--port", str(http), "--output", str(config), f"index={index}", f"reranker={reranker}",
                            "reranker_max_length=128"],
                           cwd=REPO, capture_output=True, text=True, timeout=120)
    assert build.returncode == 0, build.stderr
    env = dict(os.environ, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32),
               RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAYRAG_HOME=str(tmp_path / "home"),
               RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S="60", RAY_SERVE_PROXY_HEALTH_CHECK_TIMEOUT_S="60",
               PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    env.pop("RAY_ADDRESS", None)
    head = subprocess.Popen([str(BIN / "ray"), "start", "--head", "--block", f"--port={gcs}",
                             "--node-ip-address=127.0.0.1", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
                             "--include-dashboard=true", "--num-cpus=2", "--disable-usage-stats",
                             # port 0: a free one; the default may be another Ray's on this machine
                             # (the quickstart's beside the suite), and then the agent waits 3.3 s
                             # for it and runs without its HTTP server (rayrag/ray_utils.py)
                             "--dashboard-agent-listen-port=0"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_http(f"http://127.0.0.1:{dash}/api/version", head, timeout=180,
                      headers={"Authorization": f"Bearer {env['RAY_AUTH_TOKEN']}"})
        deploy = subprocess.run([str(BIN / "serve"), "deploy", str(config), "--address", f"http://127.0.0.1:{dash}"],
                                env=env, capture_output=True, text=True, timeout=300)
        assert deploy.returncode == 0, deploy.stdout + deploy.stderr
        url = f"http://127.0.0.1:{http}"
        deadline, last = time.time() + 600, None
        while time.time() < deadline:
            try:
                last = httpx.get(f"{url}/readyz", timeout=10)
                if last.status_code == 200:
                    break
            except httpx.HTTPError as e:
                last = e
            time.sleep(2)
        assert getattr(last, "status_code", None) == 200, f"not ready: {last!r} {getattr(last, 'text', '')}"
        r = httpx.post(f"{url}/search", json={"query": "cells", "k": 3, "rerank": True, "rerank_k": 5}, timeout=60)
        assert r.status_code == 200, r.text
        hits = r.json()["results"]
        assert len(hits) == 3 and all(h["stage"] == "reranker" for h in hits)
    finally:
        stop_process_tree(head)
        current = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
        if current.is_file() and current.read_text().strip() == f"127.0.0.1:{gcs}":
            current.unlink()
