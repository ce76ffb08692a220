"""SIGTERM (kill, Kubernetes, `ray job stop`) and Ctrl-C stop every process a job started.

Each run starts the real command in a session of its own, records every descendant while it
works, signals the command's own PID only (as a shell or the kubelet does), and then expects the
command to end by itself with every recorded process gone: no Ray daemon, agent or worker left.
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import free_port
from tests.fault_checks import temp_leftovers
from tests.serve_fixtures import make_corpus, make_index

REPO = Path(__file__).resolve().parents[1]


def _signal_when_ready(args: list[str], ready, sig: int, env: dict, timeout: float = 300) -> tuple[int, str, list]:
    """Run ``args``; once ``ready()`` holds, send ``sig`` to it alone. Returns its exit code, its
    output and the descendants still alive 30 s after it ended (killed afterwards, by PID)."""
    log = Path(env["RAYRAG_HOME"]) / "run.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    seen: dict[int, psutil.Process] = {}
    with log.open("w") as out:
        # SIGINT as at a terminal: a non-interactive shell starts background commands with SIGINT
        # ignored (CI may run the suite so), and Python then never turns it into KeyboardInterrupt
        proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, process_group=0,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.time() + timeout
        while not ready():
            _record(proc.pid, seen)
            assert proc.poll() is None, f"ended before the signal:\n{log.read_text()[-3000:]}"
            assert time.time() < deadline, f"not ready in {timeout} s:\n{log.read_text()[-3000:]}"
            time.sleep(0.25)
        _record(proc.pid, seen)
        assert any("raylet" in _cmd(p) for p in seen.values()), "Ray was not running when signalled"
        proc.send_signal(sig)
        returncode = proc.wait(timeout=120)
        _, alive = psutil.wait_procs(list(seen.values()), timeout=30)
        left = [(p.pid, _cmd(p)[:120]) for p in alive if _is_live(p)]
    finally:
        for p in [psutil.Process(proc.pid)] if proc.poll() is None else []:
            p.kill()
        for p in seen.values():
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
    return returncode, log.read_text(), left


def _record(pid: int, seen: dict) -> None:
    try:
        for p in psutil.Process(pid).children(recursive=True):
            seen.setdefault(p.pid, p)
    except psutil.NoSuchProcess:
        pass


def _cmd(p: psutil.Process) -> str:
    try:
        return " ".join(p.cmdline())
    except psutil.Error:
        return ""


def _is_live(p: psutil.Process) -> bool:
    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _env(tmp_path: Path) -> dict:
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false", RAYRAG_HOME=str(tmp_path / "home"))
    for var in ("RAY_ADDRESS", "RAYRAG_API_KEY"):
        env.pop(var, None)
    return env


def test_sigterm_stops_serve_run_and_everything_it_started(tmp_path, tiny_bert, data_dir):
    index = make_index(tiny_bert, make_corpus(data_dir, tmp_path), tmp_path / "index")
    port = free_port()

    def ready() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    args = [sys.executable, "-m", "jobs.serve", "run", "--config", "jobs/configs/serve/scifact.yaml",
            f"index={index}", "--port", str(port)]
    returncode, output, left = _signal_when_ready(args, ready, signal.SIGTERM, _env(tmp_path))
    assert left == [], f"left running after SIGTERM: {left}"
    assert returncode == 0, output[-3000:]  # a requested stop, not a crash (it was -6: Ray's abort handler)
    assert "Traceback" not in output, output[-3000:]


def test_ctrl_c_and_sigterm_stop_a_job_with_nothing_half_written(tmp_path, data_dir):
    """The encode job, stopped mid-way: exit 130 / 143 with one line, every process gone, no
    manifest, no temp file (the finished shards stay for a resume, as after a crash)."""
    # the whole SciFact corpus: minutes of work, so the signal (at the first finished shard, ~15 s
    # in) always lands mid-job, however fast the machine (600 documents were done in 26 s in CI)
    corpus = data_dir / "scifact" / "corpus.jsonl"
    for sig, code, word in ((signal.SIGINT, 130, "Ctrl-C"), (signal.SIGTERM, 143, "SIGTERM")):
        out = tmp_path / f"enc-{code}"
        args = [sys.executable, "-m", "jobs.encode", "--model", "minilm", "--output-dir", str(out),
                f"corpus={corpus}", "docs_per_shard=40", "batch_size=20", "max_length=96", "num_actors=2"]
        returncode, output, left = _signal_when_ready(
            args, lambda: any((out / "shards").glob("shard-*.json")), sig, _env(tmp_path / str(code)))
        assert left == [], f"left running after {word}: {left}"
        assert returncode == code, output[-3000:]
        assert f"rayrag: stopped by {word}" in output and "Traceback" not in output, output[-3000:]
        assert not (out / "manifest.json").exists()
        assert not temp_leftovers(out)
