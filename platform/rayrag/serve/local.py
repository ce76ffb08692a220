"""Start the application on the Ray this process is connected to, and wait until it is ready."""
from __future__ import annotations

import json
import shlex
import time

from .config import ServeConfig

APP_NAME = "rayrag"


def start(cfg: ServeConfig, host: str = "127.0.0.1", port: int = 8000, timeout_s: float = 600) -> str:
    """Deploy ``cfg`` with HTTP on ``host:port``; returns the base URL once /readyz says ready."""
    from ray import serve

    from .app import build

    serve.start(http_options={"host": host, "port": port})
    serve.run(build(cfg), name=APP_NAME, route_prefix="/")
    url = f"http://{host}:{port}"
    wait_ready(url, timeout_s)
    return url


def wait_ready(url: str, timeout_s: float = 600) -> dict:
    """Poll /readyz; on timeout, fail with what the replicas last said (e.g. a load error)."""
    import httpx

    deadline, last = time.time() + timeout_s, "no answer"
    while time.time() < deadline:
        try:
            r = httpx.get(f"{url}/readyz", timeout=10)
            if r.status_code == 200:
                return r.json()
            last = r.text
        except httpx.HTTPError as e:
            last = f"{type(e).__name__}: {e}"
        time.sleep(1)
    raise TimeoutError(f"{url} was not ready after {timeout_s:.0f}s: {last}")


def curl_line(url: str, query: str, k: int = 10, rerank: bool = False, key_env: str | None = None) -> str:
    body = json.dumps({"query": query, "k": k, "rerank": rerank})
    auth = f" -H \"Authorization: Bearer ${key_env}\"" if key_env else ""
    return f"curl -s {url}/search -H 'Content-Type: application/json'{auth} -d {shlex.quote(body)}"
