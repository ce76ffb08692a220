"""Run the shipped Serve config behind Ray's HAProxy, query it, stop it: for test_serve_haproxy.py.

Runs inside a network namespace of its own (``unshare -n``) whose one interface is loopback:
Ray's HAProxy mode binds its stats and metrics listeners, and the replicas' gRPC ports, on all
interfaces, so a namespace is how this test keeps every server on loopback. Everything the test
asserts on is written to ``--out`` as JSON; the test compares it with the library.

    unshare -n python tests/haproxy_app.py --out result.json --requests requests.json -- key=value ...
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

from rayrag.ray_utils import free_port

REPO = Path(__file__).resolve().parents[1]


def listener(port: int) -> str | None:
    """The name of the process listening on 127.0.0.1:``port``."""
    for c in psutil.net_connections(kind="tcp"):
        if c.status == psutil.CONN_LISTEN and c.laddr.port == port and c.pid:
            return Path(psutil.Process(c.pid).cmdline()[0]).name
    return None


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--requests", required=True, help="JSON list of [method, path, body]")
    ap.add_argument("--home", required=True)
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()

    if set(psutil.net_if_addrs()) - {"lo"}:
        sys.exit("run me in a loopback-only network namespace (unshare -n)")
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    port = free_port()
    from rayrag.serve.ray_env import CLUSTER_ENV

    env = dict(os.environ, **CLUSTER_ENV, RAYRAG_HOME=args.home,  # what the k8s pods get
               RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S="60", RAY_SERVE_PROXY_HEALTH_CHECK_TIMEOUT_S="60")
    env.pop("RAY_ADDRESS", None)
    log = open(Path(args.out).with_suffix(".log"), "w")
    server = subprocess.Popen([sys.executable, "-m", "jobs.serve", "run", "--config", "jobs/configs/serve/scifact.yaml",
                               "--port", str(port), *args.overrides], cwd=REPO, env=env, stdout=log,
                              stderr=subprocess.STDOUT, process_group=0)
    out: dict = {"port": port}
    tree: list[psutil.Process] = []
    try:
        url, deadline = f"http://127.0.0.1:{port}", time.time() + 600
        while time.time() < deadline and server.poll() is None:
            try:
                if httpx.get(f"{url}/readyz", timeout=10).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(2)
        else:
            out["error"] = f"not ready (exit code {server.poll()})"
            return 0
        out["listener"] = listener(port)
        tree = psutil.Process(server.pid).children(recursive=True)
        out["processes"] = sorted({Path(p.cmdline()[0]).name for p in tree if p.is_running()})
        answers = []
        with httpx.Client(base_url=url, timeout=120) as client:
            for method, path, body in json.loads(Path(args.requests).read_text()):
                r = client.request(method, path, json=body)
                answers.append({"status": r.status_code, "body": r.json()})
        out["answers"] = answers
    finally:
        server.send_signal(signal.SIGTERM)  # jobs.serve run stops Serve, HAProxy and its Ray
        try:
            out["exit_code"] = server.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            out["exit_code"] = server.wait(timeout=30)
        psutil.wait_procs(tree, timeout=30)
        out["left_running"] = [f"{p.pid} {p.name()}" for p in tree
                               if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        for p in tree:  # never leave a process of ours behind, whatever the test then says
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        Path(args.out).write_text(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
