"""Start the application on the Ray this process is connected to, and wait until it is ready."""
from __future__ import annotations

import json
import shlex
import time

from ..errors import DataError
from .config import ServeConfig

APP_NAME = "rayrag"


def start(cfg: ServeConfig, host: str = "127.0.0.1", port: int = 8000, timeout_s: float = 600) -> str:
    """Deploy ``cfg`` with HTTP on ``host:port``; returns the base URL once /readyz says ready.
    ``port`` 0: a free one, picked here, seconds before Serve binds it (one picked minutes
    earlier may be another process's by then).

    An open API on a non-loopback address is refused here, before anything is deployed."""
    from ray import serve

    from ..ray_utils import free_port
    from .app import build
    from .auth import check_exposure, load_key

    key = load_key(cfg.auth)
    check_exposure(cfg.auth, key, host)
    port = port or free_port()
    serve.start(http_options={"host": host, "port": port})
    serve.run(build(cfg), name=APP_NAME, route_prefix="/")
    url = f"http://{_client_host(host)}:{port}"
    wait_ready(url, timeout_s, key=key)
    return url


def _client_host(host: str) -> str:
    """Where a client on this machine reaches a server bound to ``host``."""
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def wait_ready(url: str, timeout_s: float = 600, key: bytes | None = None) -> dict:
    """Poll /readyz; on timeout or a load error no retry mends, fail with what the replicas said."""
    import httpx

    headers = {"Authorization": f"Bearer {key.decode()}"} if key else {}
    deadline, last = time.time() + timeout_s, "no answer"
    while time.time() < deadline:
        try:
            r = httpx.get(f"{url}/readyz", headers=headers, timeout=10)
            if r.status_code == 200:
                return r.json()
            last = r.text
            body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
            failed = [f"{name}: {s.get('error')}" for name, s in body.items()
                      if isinstance(s, dict) and s.get("permanent")]
            if failed:
                raise DataError(f"{url} cannot become ready: " + "; ".join(failed))
        except httpx.HTTPError as e:
            last = f"{type(e).__name__}: {e}"
        time.sleep(0.25)  # /readyz is cheap: poll often, so the caller goes on as soon as it is ready
    raise TimeoutError(f"{url} was not ready after {timeout_s:.0f}s: {last}")


def curl_line(url: str, query: str, k: int = 10, rerank: bool = False, key_env: str | None = None) -> str:
    body = json.dumps({"query": query, "k": k, "rerank": rerank})
    auth = f" -H \"Authorization: Bearer ${key_env}\"" if key_env else ""
    return f"curl -s {url}/search -H 'Content-Type: application/json'{auth} -d {shlex.quote(body)}"
