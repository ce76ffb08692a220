"""Jobs submitted with the `ray job submit` CLI to a real two-node Ray cluster on 127.0.0.1,
tracked in a real `mlflow server`: what a user does with `ray start --head` + a worker node.
"""
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil
import pytest
from mlflow import MlflowClient

from tests.conftest import free_port, kill_process_tree, stop_process_tree, wait_for_http

REPO = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).parent / "ray")


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """Head (1 CPU, dashboard) + worker node (1 CPU), both on 127.0.0.1, token auth on.

    One cluster for the module (its start and stop are about a minute of a 2-core machine): the
    jobs test runs on it first, then the node-loss test, which kills the worker node, last."""
    tmp_path = tmp_path_factory.mktemp("cluster")
    # PATH as after `source .venv/bin/activate`: job entrypoints say `python -m jobs.X`
    # RAYRAG_HOME: set up before any test's own (conftest's _isolated_home), so it gets one here
    env = dict(os.environ, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32),
               RAYRAG_HOME=str(tmp_path / "rayrag-home"),
               RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    env.pop("RAY_ADDRESS", None)
    gcs, dash = free_port(), free_port()
    common = ["--block", "--node-ip-address=127.0.0.1", "--num-cpus=1", "--disable-usage-stats"]
    # Each node's dashboard agent gets a free port: the default (52365) may belong to another
    # Ray on this machine, and a head without its agent answers "No available agent to submit job".
    head = subprocess.Popen([RAY, "start", "--head", f"--port={gcs}", "--dashboard-host=127.0.0.1",
                             f"--dashboard-port={dash}", "--include-dashboard=true",
                             f"--dashboard-agent-listen-port={free_port()}", *common],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs = [head]
    worker_tmp = tempfile.mkdtemp(prefix="rayw-")  # short: Ray's socket paths must fit 107 bytes
    try:
        wait_for_http(f"http://127.0.0.1:{dash}/api/version", head, timeout=120,
                      headers={"Authorization": f"Bearer {env['RAY_AUTH_TOKEN']}"})
        log = open(tmp_path / "worker.log", "w")
        # The worker node gets a temp dir of its own, as on another machine: sharing the head's,
        # its runtime-env agent deletes the unpacked working_dir that a job's driver runs in.
        worker = subprocess.Popen([sys.executable, str(REPO / "tests" / "ray_worker_node.py"), "start",
                                   f"--address=127.0.0.1:{gcs}", f"--dashboard-agent-listen-port={free_port()}",
                                   f"--temp-dir={worker_tmp}", *common],
                                  env=env, stdout=log, stderr=subprocess.STDOUT)
        procs.append(worker)
        deadline = time.time() + 60
        while (nodes := _alive_nodes(f"http://127.0.0.1:{dash}", env["RAY_AUTH_TOKEN"])) < 2:
            assert worker.poll() is None and time.time() < deadline, (
                f"worker node did not join ({nodes} nodes):\n{_alive_nodes.last}\n{(tmp_path / 'worker.log').read_text()[-1000:]}")
            time.sleep(1)
        yield {"env": env, "dashboard": f"http://127.0.0.1:{dash}", "gcs": f"127.0.0.1:{gcs}", "procs": procs}
    finally:
        pids = [p.pid for p in procs]
        descendants = [c for p in procs for c in _children(p.pid)]
        for p in reversed(procs):
            stop_process_tree(p)
        # `ray stop` would also forget the cluster; stopping by PID leaves its address behind,
        # and a later plain ray.init() on this machine would try to join the dead cluster.
        current = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
        if current.is_file() and current.read_text().strip() == f"127.0.0.1:{gcs}":
            current.unlink()
        psutil.wait_procs(descendants, timeout=30)
        left = [c for c in descendants if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
        shutil.rmtree(worker_tmp, ignore_errors=True)
        assert not left, f"processes left running after the cluster stopped: {left} (roots {pids})"


def _children(pid):
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _api(cluster_or_url, path: str, token: str | None = None):
    """GET ``path`` from the head's dashboard (the Jobs and State REST APIs that the `ray job` and
    `ray list` commands call), with the cluster's token. Polling goes through here: each `ray`
    command is a Python process that costs about 2 CPU-seconds here, and a 2 s poll of
    `ray job status` took half a core from the jobs it was waiting on."""
    url, token = ((cluster_or_url["dashboard"], cluster_or_url["env"]["RAY_AUTH_TOKEN"])
                  if isinstance(cluster_or_url, dict) else (cluster_or_url, token))
    r = httpx.get(url + path, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    r.raise_for_status()
    return r.json()


def _nodes(dashboard: str, token: str) -> list[dict]:
    """Every node the State API knows (`ray list nodes`), alive or dead."""
    return _api(dashboard, "/api/v0/nodes", token)["data"]["result"]["result"]


def _alive_nodes(dashboard: str, token: str) -> int:
    try:
        nodes = _nodes(dashboard, token)
    except httpx.HTTPError as e:
        _alive_nodes.last = repr(e)
        return 0
    _alive_nodes.last = json.dumps([(n["node_id"][:8], n["state"], n["is_head_node"]) for n in nodes])
    return sum(n["state"] == "ALIVE" for n in nodes)


def _node_ids(cluster) -> dict[str, str]:
    """{"head": node id, "worker": node id}, from the State API (what `ray list nodes` reads)."""
    alive = [n for n in _nodes(cluster["dashboard"], cluster["env"]["RAY_AUTH_TOKEN"]) if n["state"] == "ALIVE"]
    assert len(alive) == 2, alive
    return {("head" if n["is_head_node"] else "worker"): n["node_id"] for n in alive}


def _start_job(cluster, runtime_env: dict, *entrypoint: str) -> str:
    """`ray job submit --no-wait`; the job's id."""
    base = [RAY, "job", "submit", "--address", cluster["dashboard"], "--working-dir", str(REPO),
            "--runtime-env-json", json.dumps(runtime_env), "--no-wait", "--"]
    deadline = time.time() + 120
    while True:
        out = subprocess.run(base + list(entrypoint), env=cluster["env"], capture_output=True, text=True, cwd=REPO)
        # A loaded machine can start the head's job agent after the dashboard answers; Ray says
        # "No available agent to submit job, please try again later".
        if out.returncode == 0 or "No available agent" not in out.stderr or time.time() > deadline:
            break
        time.sleep(3)
    assert out.returncode == 0, out.stderr[-2000:]
    return next(w.strip("'") for w in out.stdout.split() if w.strip("'").startswith("raysubmit_"))


def _job_state(cluster, job_id: str) -> str:
    """PENDING / RUNNING / SUCCEEDED / FAILED / STOPPED, from the Jobs API (`ray job status`)."""
    return _api(cluster, f"/api/jobs/{job_id}")["status"]


def _cli_job_state(cluster, job_id: str) -> str:
    """The same, as `ray job status` prints it for a user."""
    st = subprocess.run([RAY, "job", "status", "--address", cluster["dashboard"], job_id],
                        env=cluster["env"], capture_output=True, text=True)
    # "Job 'raysubmit_..' succeeded" when it ended; "Status for job 'raysubmit_..': RUNNING" before
    text = (st.stdout + st.stderr).lower()
    return next((s for s in ("SUCCEEDED", "FAILED", "STOPPED", "RUNNING", "PENDING")
                 if f"' {s.lower()}" in text or f"': {s.lower()}" in text), "UNKNOWN")


def _wait_job(cluster, job_id: str, timeout: float = 600) -> None:
    """Poll until the job ends; fail with its logs unless it succeeded, and with the Python
    stacks of the cluster's workers if it is still running (where a hung job waits)."""
    deadline = time.time() + timeout
    while (state := _job_state(cluster, job_id)) not in ("SUCCEEDED", "FAILED", "STOPPED") and time.time() < deadline:
        time.sleep(1)
    if state != "SUCCEEDED":
        logs = subprocess.run([RAY, "job", "logs", "--address", cluster["dashboard"], job_id],
                              env=cluster["env"], capture_output=True, text=True).stdout
        # transformers prints a table of the MLM head's unused weights at every load of tiny_bert
        logs = "\n".join(line for line in logs.splitlines() if not any(n in line for n in LOAD_NOISE))
        stacks = _worker_stacks(cluster) if state in ("RUNNING", "PENDING", "UNKNOWN") else ""
        pytest.fail(f"job {job_id} ended {state}:\n{logs[-5000:]}\n{stacks}")


RAY_SERVICES = ("ray::IDLE", "ray::DashboardAgent", "ray::RuntimeEnvAgent")
STACK_KEYS = ("rayrag/", "jobs/", "ray/train/", "torch/", "deepspeed/")
LOAD_NOISE = ("LOAD REPORT", "| UNEXPECTED", "| MISSING", "Key  ", "-----+-", "Notes:", "- UNEXPECTED:", "- MISSING:")


def _worker_stacks(cluster, per_process: int = 2000) -> str:
    """`py-spy dump` of each job driver and Ray worker running a task or actor on the cluster:
    their main thread and any thread in this project's, Ray Train's, torch's or DeepSpeed's code."""
    spy = str(Path(sys.executable).parent / "py-spy")
    dumps = []
    for proc in (c for p in cluster["procs"] for c in _children(p.pid)):
        try:
            cmd = " ".join(proc.cmdline())
        except psutil.Error:
            continue
        if not (cmd.startswith("ray::") or " -m jobs." in cmd) or cmd.startswith(RAY_SERVICES):
            continue
        try:  # a diagnosis that fails must not hide the failure it explains
            out = subprocess.run([spy, "dump", "--pid", str(proc.pid)], capture_output=True, text=True, timeout=60)
            text = out.stdout or out.stderr
        except (OSError, subprocess.TimeoutExpired) as e:
            text = f"Thread (py-spy failed: {e}) MainThread"
        threads = ("\n" + text).split("\nThread ")
        kept = [t for t in threads[1:] if "MainThread" in t.splitlines()[0] or any(k in t for k in STACK_KEYS)]
        dumps.append(f"--- pid {proc.pid}: {cmd[:100].strip()}\n" + "\n".join("Thread " + t for t in kept)[-per_process:])
    return "Python stacks of the cluster's workers:\n" + "\n".join(dumps)


def _submit(cluster, runtime_env: dict, *entrypoint: str, timeout: float = 600) -> str:
    job_id = _start_job(cluster, runtime_env, *entrypoint)
    _wait_job(cluster, job_id, timeout)
    return job_id


def _shards_by(out: Path, node_id: str | None) -> list[int]:
    """Committed shards (those with a sidecar) encoded on ``node_id`` (None: on any node)."""
    done = []
    for sidecar in (out / "shards").glob("shard-*.json"):
        try:
            info = json.loads(sidecar.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if node_id is None or info.get("node_id") == node_id:
            done.append(info["shard"])
    return done


def test_submitted_jobs_on_a_two_node_cluster(ray_cluster, mlflow_server, tmp_path, data_dir, tiny_bert):
    runtime_env = {"env_vars": {"RAYRAG_DATA_DIR": str(data_dir), "MLFLOW_TRACKING_URI": mlflow_server,
                                "RAYRAG_GIT_COMMIT": "0" * 40, "TOKENIZERS_PARALLELISM": "false"}}
    # evaluate: two retrievers, one Ray task each (1 CPU), so they land on different nodes
    out = tmp_path / "eval"
    _submit(ray_cluster, runtime_env, "python", "-m", "jobs.evaluate", "--dataset", "scifact",
            "--output-dir", str(out), f"retrievers=[bm25,tiny=dense:{tiny_bert}]")
    result = json.loads((out / "result.json").read_text())
    assert 0.655 <= result["metrics"]["bm25"]["ndcg@10"] <= 0.685
    assert result["tracking_uri"] == mlflow_server
    run = MlflowClient(mlflow_server).get_run(result["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.metrics["bm25/ndcg_at_10"] == pytest.approx(result["metrics"]["bm25"]["ndcg@10"])
    assert run.data.tags["mlflow.source.git.commit"] == "0" * 40
    assert "result.json" in {a.path for a in MlflowClient(mlflow_server).list_artifacts(run.info.run_id)}

    # encode: the Ray Data actor pool spans both nodes
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("\n".join((data_dir / "scifact" / "corpus.jsonl").read_text().splitlines()[:400]) + "\n")
    enc = tmp_path / "enc"
    # Ray Data hands shards to whichever pool actor is up; 8 small shards can all be done by the
    # head's actor before the worker node's has started (seen once on a loaded machine). Ray's
    # own setting makes the pool wait for both actors first, so the assertion below is decided
    # by placement, not by which actor started sooner.
    both_up = {**runtime_env, "env_vars": {**runtime_env["env_vars"], "RAY_DATA_DEFAULT_WAIT_FOR_MIN_ACTORS_S": "300"}}
    _submit(ray_cluster, both_up, "python", "-m", "jobs.encode", "--model", str(tiny_bert),
            "--output-dir", str(enc), f"corpus={corpus}", "kind=dense", "docs_per_shard=50", "num_actors=2",
            "cpus_per_actor=1")
    manifest = json.loads((enc / "manifest.json").read_text())
    assert manifest["count"] == 400 and len(manifest["shards"]) == 8
    # the work ran on both nodes: each shard records the node that encoded it
    nodes = _node_ids(ray_cluster)
    ran_on = {s["node_id"] for s in manifest["shards"]}
    assert ran_on == {nodes["head"], nodes["worker"]}, (ran_on, nodes)
    assert MlflowClient(mlflow_server).get_run(manifest["mlflow_run_id"]).data.tags["rayrag.job"] == "encode"

    # train: Ray Train with two workers (1 CPU each), one per node, DeepSpeed ZeRO-2 over gloo
    from rayrag.data import load_beir

    ds = load_beir(data_dir / "scifact", "train")
    examples = tmp_path / "examples.jsonl"
    qids = sorted(ds.queries)[:16]
    others = sorted(ds.corpus)[:64]
    examples.write_text("".join(json.dumps({
        "query_id": q, "query": ds.queries[q], "positives": [{"id": d} for d in ds.qrels[q]],
        "negatives": [{"id": d} for d in others[i:i + 4] if d not in ds.qrels[q]]}) + "\n" for i, q in enumerate(qids)))
    train_out = tmp_path / "train"
    job = _submit(ray_cluster, runtime_env, "python", "-m", "jobs.train_dense", "--model", str(tiny_bert),
            "--output-dir", str(train_out), f"examples={examples}", "num_workers=2", "cpus_per_worker=1", "zero_stage=2",
            "batch_size=2", "group_size=2", "max_steps=3", "doc_max_length=32", "eval.split=null",
            "register_as=tiny-submitted")
    assert _cli_job_state(ray_cluster, job) == "SUCCEEDED"  # what `ray job status` tells the user
    trained = json.loads((train_out / "result.json").read_text())
    assert trained["total_steps"] == 3 and (train_out / "model" / "modules.json").is_file()
    client = MlflowClient(mlflow_server)
    assert client.get_run(trained["mlflow_run_id"]).data.tags["rayrag.job"] == "train-infonce"
    assert client.get_model_version("tiny-submitted", trained["registered_version"]).run_id == trained["mlflow_run_id"]


def test_encode_job_survives_the_loss_of_a_worker_node(ray_cluster, tmp_path, data_dir, tiny_bert):
    from rayrag.encode.store import load_manifest, read_dense
    from tests.fault_checks import temp_leftovers

    runtime_env = {"env_vars": {"RAYRAG_DATA_DIR": str(data_dir), "TOKENIZERS_PARALLELISM": "false",
                                "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}}
    nodes = _node_ids(ray_cluster)
    enc = tmp_path / "enc"
    job = _start_job(ray_cluster, runtime_env, "python", "-m", "jobs.encode", "--model", str(tiny_bert),
                     "--output-dir", str(enc), "kind=dense", "docs_per_shard=40", "num_actors=2",
                     "cpus_per_actor=1")
    # kill the worker node once it has committed shards of its own, while the job is mid-way
    deadline = time.time() + 300
    while not (worker_done := _shards_by(enc, nodes["worker"])):
        if _job_state(ray_cluster, job) not in ("PENDING", "RUNNING"):
            _wait_job(ray_cluster, job)  # fails, with the job's logs, unless it succeeded
            pytest.fail("the job ended before the worker node committed a shard")
        assert time.time() < deadline, "the worker node committed no shard in 300 s"
        time.sleep(0.2)
    kill_process_tree(ray_cluster["procs"][1])  # raylet, its workers and agents at once
    before = set(_shards_by(enc, None))
    assert not (enc / "manifest.json").exists(), "the job ended before the node was killed"
    _wait_job(ray_cluster, job, timeout=600)

    manifest = load_manifest(enc)
    corpus_ids = [json.loads(line)["_id"] for line in (data_dir / "scifact" / "corpus.jsonl").open()]
    ids, vectors = read_dense(enc)  # verify=True: every shard's checksum and count
    assert manifest["count"] == len(corpus_ids) == len(ids) == vectors.shape[0]
    assert sorted(ids) == sorted(corpus_ids)  # exactly one vector per document
    by_shard = {s["shard"]: s["node_id"] for s in manifest["shards"]}
    # what the worker finished before it died is kept; all that was left ran on the head
    assert set(worker_done) <= {k for k, v in by_shard.items() if v == nodes["worker"]}
    after = [k for k in by_shard if k not in before]
    assert after and {by_shard[k] for k in after} == {nodes["head"]}, (len(after), nodes)
    assert not temp_leftovers(enc)
    print(f"node lost with {len(before)}/{len(by_shard)} shards committed ({len(worker_done)} by the worker); "
          f"{len(after)} shards encoded on the head after the loss")
