"""The quickstart as a process of its own, checked by its test.

The quickstart (a main-dependencies-only venv, then encode, index, evaluate and serve on real
SciFact) is the suite's one multi-minute test, and much of the rest of the suite waits on
process start-up and sockets rather than the CPU. By default ``conftest.py`` starts it once the
two-node cluster test is done, at nice 19, and runs its test last: it then only takes the CPU
time the other tests leave idle (an earlier overlap at equal priority starved the two-node
cluster test on 2 cores), and its test waits for what is left of it. Only its venv set-up (pip,
no Ray) starts earlier, at collection, in what the cluster test leaves idle.
RAYRAG_QUICKSTART_BACKGROUND=0 runs it inside its own test, alone.
Its own RAYRAG_HOME (MLflow store) and output folder keep it apart from the tests running beside
it, and every Ray it starts is a private local instance (``ray_utils.init_ray``), never one of
theirs; its children (pip, Ray's raylet and workers) inherit the priority.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NODE_ID = "tests/test_quickstart.py::test_quickstart_reproduces_published_numbers"
TIMEOUT_S = 2700


@dataclass
class QuickstartRun:
    proc: subprocess.Popen
    root: Path  # holds qs/ (its --output-dir), home/ (RAYRAG_HOME), the two logs and the gate
    venv: Path
    gate_open: bool = False  # a run started ungated is open from the start

    def open_gate(self) -> None:
        """Let a gated run go on from its set-up to the quickstart (once; later calls do nothing)."""
        if not self.gate_open:
            (self.root / "gate").touch()
            self.gate_open = True

    @property
    def out(self) -> Path:
        return self.root / "qs"

    def wait(self) -> tuple[int, str, str]:
        """(exit code, stdout, stderr); killed (with its process group) after TIMEOUT_S in all."""
        self.open_gate()
        try:
            self.proc.wait(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, 9)
            self.proc.wait()
        return (self.proc.returncode, (self.root / "stdout.log").read_text(),
                (self.root / "stderr.log").read_text())

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


_run: QuickstartRun | None = None


def xdist_worker() -> bool:
    """This process is a pytest-xdist worker (xdist sets the variable before collection)."""
    return "PYTEST_XDIST_WORKER" in os.environ


def background() -> bool:
    """Run beside the suite (the default) rather than inside its own test. Under pytest-xdist
    each worker collects every test, so none starts it beside: its test runs it, in one worker."""
    return os.environ.get("RAYRAG_QUICKSTART_BACKGROUND", "1") != "0" and not xdist_worker()


def start(data_dir: Path, gated: bool = False) -> QuickstartRun:
    """Start the quickstart once per session (later calls return the same run, and open its gate).

    ``gated``: set up ``.venv-main`` now, but hold the quickstart itself until a later ``start``
    call opens the gate. The set-up (pip, about 130 core-seconds, no Ray) then fills CPU that the
    two-node cluster test leaves idle, and the quickstart's Ray still starts only once that test
    is done (conftest.py, BEFORE_QUICKSTART; figures in docs/DESIGN.md, "The test suite's time")."""
    global _run
    if _run is not None:
        _run.open_gate()
        return _run
    root = Path(tempfile.mkdtemp(prefix="rayrag-quickstart-"))
    venv = REPO / ".venv-main"  # scripts/setup.sh keeps it between runs; a fresh clone builds it here
    # RAYRAG_PIP_COMPILE=0 and bytecode written at import: pip byte-compiles all of every package
    # (47 of its 99 CPU-s here), while the quickstart imports a small part of them (compiling
    # that part on first import cost it 24 CPU-s: 725 against 701 with pip's bytecode).
    env = dict(os.environ, RAYRAG_DATA_DIR=str(data_dir), RAYRAG_VENV=str(venv), RAYRAG_HOME=str(root / "home"),
               RAYRAG_PIP_COMPILE="0")
    for var in ("VIRTUAL_ENV", "MLFLOW_TRACKING_URI", "RAY_ADDRESS", "PYTHONDONTWRITEBYTECODE"):
        env.pop(var, None)
    with open(root / "stdout.log", "w") as out, open(root / "stderr.log", "w") as err:
        nice = ["nice", "-n", "19"] if background() else []  # execs: the PID stays the group leader's
        # scripts/quickstart.sh runs scripts/setup.sh itself (a no-op once the gated set-up built it)
        # serve_port=0: Serve gets a port found free when it starts serving, some 20 minutes
        # from now; one found free here had been taken by then once (a CI run lost that way)
        quickstart = ["bash", "scripts/quickstart.sh", "--output-dir", str(root / "qs"), "keep_serving=false",
                      "serve_port=0"]
        if gated:
            quickstart = ["bash", "-c", 'bash scripts/setup.sh && until [ -e "$0" ]; do sleep 0.5; done && exec "$@"',
                          str(root / "gate"), *quickstart]
        proc = subprocess.Popen([*nice, *quickstart], cwd=REPO, env=env, stdout=out, stderr=err, process_group=0)
        # A process group of its own (stopped with killpg), but the suite's session: with the
        # kernel's autogroup scheduling (on by default on desktop and many server kernels) a new
        # session is a new CPU group that gets an equal share beside the whole suite whatever its
        # nice (measured here: a 2-process CPU job beside a nice-19 burner took 2.1-2.3x its time
        # alone when the burner had its own session, 1.0-1.2x when it shared ours).
        # The same holds the other way: a test's own subprocess in a new session (start_new_session)
        # is an equal peer of the suite's group, which holds the quickstart, so nice 19 no longer
        # keeps the quickstart off it (test_shutdown.py: 89 s beside two nice-19 burners against
        # 64-71 s alone; 65 s once its job shared the session). Tests start theirs with process_group=0
        # (a group of its own, for killpg, in our session); test_quickstart.py holds them to it.
    _run = QuickstartRun(proc, root, venv, gate_open=not gated)
    return _run


def stop() -> None:
    """End of session: a run whose test never collected it (interrupted session) is stopped by PID."""
    if _run is not None and _run.proc.poll() is None:
        os.killpg(_run.proc.pid, 15)
        try:
            _run.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(_run.proc.pid, 9)
