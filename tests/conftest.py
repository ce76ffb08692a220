"""Shared fixtures. Real data comes from $RAYRAG_DATA_DIR (CI: ../shared/datasets)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

# Ray reads this once at import: local test clusters must listen on 127.0.0.1 only.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
# Ray prestarts a worker per CPU for each first driver; in the tests' many short-lived local
# instances most of them never run a task, and each costs its start-up (about 3 CPU-s here).
# Off for every Ray the tests start (inherited by `ray start`, jobs and the quickstart):
# test_train_engine.py measured 159 core-s against 183, 119 s against 137. Tests only: on a
# real cluster prestarted workers cut the first tasks' latency.
os.environ.setdefault("RAY_prestart_worker_first_driver", "0")
# Ray Train's controller polls its workers every 2 s (RAY_TRAIN_HEALTH_CHECK_INTERVAL_S) and sees
# a start, a finish or a failure only at its next poll; the tests' runs last seconds, so each
# waited up to 2 s at every step of its life. 0.2 s for every Ray the tests start:
# test_train_engine.py took 73.5 s against 94.2 s, with the same CPU (108 core-s against 113).
# Tests only: a real run lasts hours and polling 10 times a second buys it nothing.
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
# Ray Train 2.60 starts a PreemptionWatcher actor for every worker group: one more Python
# process (importing ray.train, about 1.5 CPU-s here) per run, to notice cloud spot
# preemptions. A test machine is never preempted: test_train_engine.py took 129 and 126
# core-s without it against 139 and 135 with it. Tests only: on a real cluster it stays on.
os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
# `ray start --block` answers SIGTERM by draining its node for up to 30 s (Ray 2.60's default
# RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S) before it stops: on Kubernetes, time for Serve to move
# traffic to other nodes. A test cluster has no other node to drain to, so each teardown sat out
# the whole 30 s (the Serve cluster's head: 28.2 s of its test's 47.7; the two-node cluster's
# head after its worker node was killed: 30.5 s). Tests only: 0 stops at once, as before 2.60.
os.environ.setdefault("RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S", "0")
# Ray starts its workers (tasks, actors, Train workers, Serve replicas) at nice +15 by default
# (RAY_worker_niceness), so that the raylet and GCS win the CPU on a busy node. Beside the
# quickstart, which runs at nice 19 to take only what the suite leaves idle, the tests' own
# workers at 15 still lose 30% of the CPU to it (CFS weights 36 against 15; a 2-process CPU job
# at nice 15 took 1.42x its time alone beside a nice-19 burner, 1.0x at nice 0). At 0 the tests'
# workers rank with their drivers and the quickstart keeps to the idle CPU; its own workers stay
# at 19. Tests only: nothing that ships sets it.
os.environ.setdefault("RAY_worker_niceness", "0")
# Every Ray the tests start (ray.init, `ray start`, submitted jobs) runs Serve with the settings
# `jobs.serve run` and the k8s ConfigMap give it, so the tests exercise what ships.
from rayrag.ray_utils import free_port  # noqa: E402,F401  (tests import it from here)
from rayrag.serve import ray_env  # noqa: E402

ray_env.apply()

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _data_dir() -> Path:
    raw = os.environ.get("RAYRAG_DATA_DIR") or str(REPO.parent / "shared" / "datasets")
    return Path(raw).resolve()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = _data_dir()
    if not (path / "scifact" / "corpus.jsonl").is_file():
        pytest.fail(f"real datasets not found at {path}: set RAYRAG_DATA_DIR to the folder holding scifact/")
    return path


# The slowest test files, slowest first (from a `--junitxml` run of the whole suite). Under
# pytest-xdist (`-n 2 --dist loadfile --no-loadscope-reorder`, README "Tests") they start first,
# so no long file starts last while the other worker sits idle. Order only.
SLOW_FIRST = ("test_quickstart", "test_cluster", "test_encode", "test_serve", "test_train",
              "test_train_engine", "test_train_reasoning", "test_evaluate_job", "test_shutdown",
              "test_serve_cluster")


def pytest_collection_modifyitems(session, config, items):
    """The quickstart's test goes last: it waits on the quickstart, which runs beside everything
    before it (tests/quickstart_run.py), so the suite never stalls on it while other tests remain.
    BEFORE_QUICKSTART goes first. The modules that share a Ray (``ray_local``) run one after
    another, from where the first of them stood. Under xdist the slowest files go first instead
    (SLOW_FIRST). Sorts are stable: tests keep their order within a file."""
    from tests import quickstart_run

    _ray_modules.update(_module(item) for item in items if "ray_local" in item.fixturenames)
    if quickstart_run.xdist_worker():
        def rank(item) -> int:
            module = _module(item)
            return SLOW_FIRST.index(module) if module in SLOW_FIRST else len(SLOW_FIRST)

        items.sort(key=rank)
        return
    first: dict[str, int] = {}
    for i, item in enumerate(items):
        first.setdefault(_group(item), i)

    def phase(item) -> int:
        if not quickstart_run.background():
            return 0
        return 2 if item.nodeid == quickstart_run.NODE_ID else 0 if _before_quickstart(item) else 1

    items.sort(key=lambda item: (phase(item), first[_group(item)]))


# The two-node cluster on 2 cores is the test most sensitive to CPU contention (health checks,
# cross-node object pulls, gloo between the nodes): it runs first, before the quickstart starts.
# In CI its Ray Train job once stayed RUNNING past 10 minutes with the quickstart beside it (the
# cause was not found: a hung job's failure now shows its workers' stacks, test_cluster.py).
# Only the quickstart's venv set-up (pip, no Ray, nice 19 in the suite's session) runs beside it.
BEFORE_QUICKSTART = ("test_cluster",)


def _module(item) -> str:
    return Path(str(item.path)).stem


def _group(item) -> str:
    """The modules that share a Ray (``ray_local``) sort as one."""
    module = _module(item)
    return "ray_local" if module in _ray_modules else module


def _before_quickstart(item) -> bool:
    return _module(item) in BEFORE_QUICKSTART


_quickstart_wanted = False


def pytest_collection_finish(session):
    """The quickstart runs beside the rest of the suite when its test is selected
    (tests/quickstart_run.py: at the lowest CPU priority, so it only takes what the suite leaves
    idle). RAYRAG_QUICKSTART_BACKGROUND=0 runs it inside its own test instead, alone."""
    from tests import quickstart_run

    global _quickstart_wanted
    _quickstart_wanted = (not session.config.getoption("collectonly") and quickstart_run.background()
                          and (_data_dir() / "scifact" / "corpus.jsonl").is_file()
                          and any(item.nodeid == quickstart_run.NODE_ID for item in session.items))
    if _quickstart_wanted:  # its venv set-up now, beside the cluster test; the quickstart after it
        quickstart_run.start(_data_dir(), gated=True)


def pytest_runtest_setup(item):
    """Let the quickstart go with the first test not in BEFORE_QUICKSTART (``start`` returns the
    run started, gated, at collection and opens its gate)."""
    if _quickstart_wanted and not _before_quickstart(item):
        from tests import quickstart_run

        quickstart_run.start(_data_dir())


def pytest_sessionfinish(session, exitstatus):
    from tests import quickstart_run

    quickstart_run.stop()


@pytest.fixture(scope="session")
def scifact_test(data_dir):
    from rayrag.data import load_beir

    return load_beir(data_dir / "scifact", "test")


@pytest.fixture(scope="session", autouse=True)
def shared_home(tmp_path_factory):
    """Session- and module-scoped fixtures run jobs too (mining, CoT examples) before any test's
    own home exists: they track into a store of this test run, never the user's ~/.rayrag."""
    home = tmp_path_factory.mktemp("rayrag-home-shared")
    mp = pytest.MonkeyPatch()
    mp.setenv("RAYRAG_HOME", str(home))
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    yield home
    mp.undo()


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Each test tracks into its own embedded MLflow store, never the user's ~/.rayrag."""
    monkeypatch.setenv("RAYRAG_HOME", str(tmp_path_factory.mktemp("rayrag-home")))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


# The modules with a test that uses ``ray_local`` (filled at collection). They run one after
# another and share one Ray, where each used to start its own (5-7 CPU-s to start and stop one):
# the eight of them took 692 core-s and 498 s together against 732 and 534 s.
_ray_modules: set[str] = set()
_shared_ray_started = False


@pytest.fixture(scope="module")
def ray_local():
    """A private local Ray (2 CPUs, dashboard for Ray Train's State API), shared by the modules
    that use it: started by the first, stopped after the last test of the run of such modules
    (``pytest_runtest_teardown``). A Ray already running here (a test's own) is used as it is."""
    global _shared_ray_started
    import ray

    from rayrag.ray_utils import init_ray

    if not ray.is_initialized():
        _shared_ray_started = init_ray(num_cpus=2, dashboard=True)
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    """Stop the shared Ray once the next test is not in a module that uses it (after this test's
    module-scoped fixtures are gone, which may still hold its actors)."""
    global _shared_ray_started
    yield
    if _shared_ray_started and (nextitem is None or _module(nextitem) not in _ray_modules):
        import ray

        ray.shutdown()
        _shared_ray_started = False


def write_training_examples(data_dir: Path, path: Path, n_queries: int, n_negatives: int,
                            teacher: bool = False) -> Path:
    """The first ``n_queries`` real SciFact training queries (sorted ids), their positives and
    ``n_negatives`` seeded random documents each (any that are positives dropped), as mined JSONL.

    ``teacher``: every document also gets a ``teacher_score`` (distillation objectives): how many
    of the query's distinct words it contains, a lexical teacher that ranks most positives first."""
    import json
    import re

    import numpy as np

    from rayrag.data import load_beir

    ds = load_beir(data_dir / "scifact", "train")
    doc_ids = sorted(ds.corpus)
    rng = np.random.default_rng(0)

    def words(text: str) -> set[str]:
        return set(re.findall(r"\w+", text.lower()))

    with path.open("w") as f:
        for qid in sorted(ds.queries)[:n_queries]:
            pos = [d for d, r in ds.qrels[qid].items() if r > 0]
            negs = [doc_ids[i] for i in rng.choice(len(doc_ids), n_negatives, replace=False) if doc_ids[i] not in pos]
            q = words(ds.queries[qid])

            def score(d: str) -> dict:
                return {"teacher_score": float(len(q & words(ds.corpus[d].full_text)))} if teacher else {}

            f.write(json.dumps({"query_id": qid, "query": ds.queries[qid],
                                "positives": [{"id": d, "score": 1.0, **score(d)} for d in pos],
                                "negatives": [{"id": d, "score": 0.5, "rank": i + 1, **score(d)}
                                              for i, d in enumerate(negs)]}) + "\n")
    return path


def load_bench(name: str):
    """A script of bench/ imported as a module (bench/ is not a package: its scripts run by path)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def save_tiny_bert(folder: Path, model_class: str, num_hidden_layers: int, no_dropout: bool = False) -> Path:
    """A ``transformers.<model_class>`` BERT (hidden size 32) built from a config, its random
    weights seeded (the same every session), with MiniLM's real tokenizer. ``no_dropout``: a
    W-worker run and a single process then compute the same."""
    import torch
    import transformers
    from transformers import AutoTokenizer, BertConfig

    from rayrag.assets import resolve_model

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(resolve_model("minilm").path)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=num_hidden_layers,
                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=128,
                     **({"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0} if no_dropout else {}))
    getattr(transformers, model_class)(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    """A 1-layer BERT masked LM (random weights)."""
    return save_tiny_bert(tmp_path_factory.mktemp("tiny-bert"), "BertForMaskedLM", 1)


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory) -> Path:
    """A 2-layer BERT encoder without dropout, for the training runs' equivalence tests."""
    return save_tiny_bert(tmp_path_factory.mktemp("tiny-encoder"), "BertModel", 2, no_dropout=True)


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    """A 2-layer Llama from a config with SmolLM2's real tokenizer (and chat template)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from rayrag.assets import load_tokenizer

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-llama")
    # the tokenizer alone: read from the shipped GGUF when the weights are not converted (CI's
    # empty cache), so no test but test_assets' pays the 18 CPU-s conversion
    tok = load_tokenizer("smollm2-135m")
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, tie_word_embeddings=True)
    LlamaForCausalLM(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder

def wait_for_http(url: str, proc: subprocess.Popen, timeout: float = 120, headers: dict | None = None) -> None:
    import httpx

    deadline = time.time() + timeout
    while True:
        try:
            if httpx.get(url, timeout=2, headers=headers).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            raise RuntimeError(f"{url} did not come up (process exit code {proc.poll()})")
        time.sleep(0.5)


def _process_tree(proc: subprocess.Popen) -> list:
    import psutil

    try:
        return [psutil.Process(proc.pid)] + psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _send(procs: list, method: str) -> None:
    import psutil

    for p in procs:
        try:
            getattr(p, method)()
        except psutil.NoSuchProcess:
            pass


def stop_process_tree(proc: subprocess.Popen, timeout: float = 60, root_grace: float = 15) -> None:
    """SIGTERM a process we started, as `kill PID` or Ctrl-C would, and give it ``root_grace`` to
    stop what it started; then SIGTERM everything under it still running, then SIGKILL what is
    left. The root goes first because that is the order its own shutdown expects: SIGTERM to a
    `ray start --block` alone stops its node in about 4 s, while the same signal sent to all of
    its processes at once leaves the raylet waiting about 30 s for peers already gone."""
    import psutil

    procs = _process_tree(proc)
    _send(procs[:1], "terminate")
    _, alive = psutil.wait_procs(procs, timeout=root_grace)
    _send(alive, "terminate")
    _, alive = psutil.wait_procs(alive, timeout=timeout)
    _send(alive, "kill")
    psutil.wait_procs(alive, timeout=10)
    proc.wait(timeout=10)


def kill_process_tree(proc: subprocess.Popen) -> None:
    """SIGKILL a process we started and everything under it at once: a crash (or an evicted
    pod) with no chance to clean up."""
    import psutil

    procs = _process_tree(proc)
    _send(procs, "kill")
    psutil.wait_procs(procs, timeout=30)


@pytest.fixture
def mlflow_server(tmp_path):
    """A real `mlflow server` on 127.0.0.1 with a SQLite backend and proxied artifacts."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", str(tmp_path / "server-artifacts"), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/health", proc)
        yield url
    finally:
        stop_process_tree(proc)


@pytest.fixture(scope="session")
def tiny_reranker(tmp_path_factory, tiny_bert, data_dir) -> Path:
    """``tiny_bert`` trained for a few steps as a cross-encoder: a reranker with a learned head."""
    from tests.serve_fixtures import make_corpus, make_reranker

    root = tmp_path_factory.mktemp("tiny-reranker")
    return make_reranker(tiny_bert, root / "model", make_corpus(data_dir, root, n=40))
