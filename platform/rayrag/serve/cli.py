"""``rayrag serve run|build``: the Serve application from the command line.

``register(subparsers)`` adds the ``serve`` command to any argparse parser (``rayrag`` and
``python -m jobs.serve`` share it).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

DEFAULT_CONFIG = "jobs/configs/serve/scifact.yaml"


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("serve", help="serve retrieval over HTTP with Ray Serve",
                              description="Run the retriever + reranker Serve application, or write its "
                                          "Serve config file. See docs/SERVE.md.")
    sub = p.add_subparsers(dest="serve_cmd", required=True, metavar="{run,build}")
    r = sub.add_parser("run", help="deploy locally (or on RAY_ADDRESS) and serve until Ctrl-C",
                       description="Deploy the application from a Serve config file; HTTP on 127.0.0.1 unless "
                                   "--host says otherwise. key=value overrides apply to the application's args.")
    _common(r)
    r.add_argument("--query", default="What causes vitamin D deficiency?", help="sample query to answer once ready")
    r.add_argument("--no-block", action="store_true", help="exit after the sample query (for scripts and tests)")
    r.set_defaults(func=cmd_run)
    b = sub.add_parser("build", help="write the Serve config file from its args",
                       description="Regenerate a Serve config file (deployments, batching) from its "
                                   "applications[0].args plus key=value overrides.")
    _common(b)
    b.add_argument("--output", help="file to write (default: print)")
    b.set_defaults(func=cmd_build)
    return p


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=DEFAULT_CONFIG, help=f"Serve config YAML (default {DEFAULT_CONFIG})")
    p.add_argument("--host", help="HTTP host (default: the file's http_options, 127.0.0.1)")
    p.add_argument("--port", type=int, help="HTTP port (default: the file's http_options, 8000; "
                                            "with run, 0 for any free port)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. index=out/idx retriever.num_replicas=2")


def _port(flag: int | None, from_file: int, any_free: bool) -> int:
    """--port when given (0 included), else the file's; 0 (any free port, picked as Serve binds)
    only where this command binds it: a config file needs the port its clients will use."""
    from ..errors import ConfigError

    port = from_file if flag is None else flag
    low = 0 if any_free else 1
    if not low <= port < 65536:
        raise ConfigError(f"HTTP port must be in [{low}, 65535]{' (0: any free port)' if any_free else ''}, "
                          f"got {port}")
    return port


def cmd_build(args) -> int:
    from ..io import atomic_write_text
    from .serve_yaml import http_options, read, render

    doc, cfg = read(args.config, args.overrides)
    host, port = http_options(doc)
    text = render(cfg, args.output or args.config, args.host or host, _port(args.port, port, any_free=False))
    if args.output:
        atomic_write_text(args.output, text)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        print(text, end="")
    return 0


def cmd_run(args) -> int:
    import httpx
    import ray
    from ray import serve

    from ..ray_utils import check_port_free, init_ray
    from .local import curl_line, start
    from .serve_yaml import http_options, read

    from . import ray_env
    from .auth import check_exposure, load_key

    doc, cfg = read(args.config, args.overrides)
    host, port = http_options(doc)
    host, port = args.host or host, _port(args.port, port, any_free=True)
    key = load_key(cfg.auth)
    check_exposure(cfg.auth, key, host)  # before Ray starts: an open API stays on loopback
    if not os.environ.get("RAY_ADDRESS"):  # a Ray this command starts gets Serve's settings (ray_env.py);
        ray_env.apply()                    # a cluster's own are set where it starts (k8s: rayrag-env)
        if port:  # Serve binds here, so a port in use is refused now, not after Ray and the replicas start
            check_port_free(host, port, "HTTP port", "--port 0")
    started = init_ray()
    try:
        where = f"http://{host}:{port}" if port else f"{host}, on a free port"
        print(f"[serve] deploying {cfg.index} (reranker: {cfg.reranker or 'none'}) on {where}", flush=True)
        url = start(cfg, host, port)
        headers = {"Authorization": f"Bearer {key.decode()}"} if key else {}
        r = httpx.post(f"{url}/search", json={"query": args.query, "k": 3}, headers=headers, timeout=60)
        r.raise_for_status()
        print(f"[serve] ready. {args.query!r} ->")
        for hit in r.json()["results"]:
            print(f"  {hit['rank']}. {hit['id']} ({hit['score']:.3f}) {hit['title'][:90]}")
        print(f"\n  {curl_line(url, args.query, key_env=cfg.auth.api_key_env if key else None)}")
        print(f"  API docs: {url}/docs", flush=True)
        if not args.no_block:
            print("[serve] serving until Ctrl-C", flush=True)
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        serve.shutdown()
        if started:
            ray.shutdown()
    return 0


def main(argv=None) -> int:
    """Entry for ``python -m jobs.serve`` while ``rayrag serve`` is being wired into the main CLI."""
    import os

    from ..errors import RayragError

    if not os.environ.get("RAY_ADDRESS"):
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # read by Ray at import
    parser = argparse.ArgumentParser(prog="rayrag")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except RayragError as e:
        print(f"rayrag: error: {e}", file=sys.stderr)
        return 2
