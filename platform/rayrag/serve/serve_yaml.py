"""The Serve config file (``serve run`` / ``serve deploy`` / KubeRay ``serveConfigV2``).

One source of truth: ``applications[0].args`` is a ServeConfig. Everything else in the file
(the ``deployments:`` options Serve applies on top of the code, batching ``user_config``)
is generated from it by ``rayrag serve build``, in the layout ``serve build`` writes, and
``tests/test_serve_config.py`` fails when the file and its args drift apart.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import yaml

from ..config import _merge, from_dict, load_yaml, parse_overrides, to_dict
from ..errors import ConfigError
from .config import ServeConfig

IMPORT_PATH = "rayrag.serve.app:build_app"
APP_NAME = "rayrag"


def serve_config(cfg: ServeConfig, host: str = "127.0.0.1", port: int = 8000) -> dict:
    """The Serve deploy schema for ``cfg``; host 127.0.0.1 (``serve build`` would write 0.0.0.0)."""
    deployments = [{"name": "Ingress", **cfg.ingress.serve_options()},
                   {"name": "Retriever", **cfg.retriever.serve_options(), "user_config": cfg.retriever.batching()}]
    if cfg.reranker:
        deployments.append({"name": "Reranker", **cfg.rerank.serve_options(), "user_config": cfg.rerank.batching()})
    return {
        "proxy_location": "EveryNode",
        "http_options": {"host": host, "port": port},
        "applications": [{"name": APP_NAME, "route_prefix": "/", "import_path": IMPORT_PATH,
                          "args": to_dict(cfg), "deployments": deployments}],
    }


def header(path: str) -> str:
    return (f"# serve run {path}\n"
            f"# cluster: RAY_AUTH_MODE=token serve deploy {path} --address http://127.0.0.1:8265\n"
            f"# rayrag: python -m jobs.serve run --config {path} [key=value ...]\n"
            f"# Generated from applications[0].args (a rayrag ServeConfig, see docs/SERVE.md) by\n"
            f"#   python -m jobs.serve build --config {path} --output {path}\n"
            f"# Edit args, then rebuild: the deployments section must match them (tests check).\n")


def render(cfg: ServeConfig, path: str, host: str = "127.0.0.1", port: int = 8000) -> str:
    from ray.serve.schema import ServeDeploySchema

    doc = serve_config(cfg, host, port)
    ServeDeploySchema.model_validate(doc)  # what `serve deploy` would reject, rejected here
    return header(path) + yaml.safe_dump(doc, sort_keys=False, width=100)


def read(path: str | Path, overrides: Iterable[str] = ()) -> tuple[dict, ServeConfig]:
    """The file as a dict and its application's args as a validated ServeConfig (+ overrides)."""
    doc = load_yaml(path)
    apps = doc.get("applications") or []
    ours = [a for a in apps if a.get("import_path") == IMPORT_PATH]
    if len(ours) != 1:
        raise ConfigError(f"{path}: expected one application with import_path {IMPORT_PATH}, found {len(ours)}")
    args = _merge(ours[0].get("args") or {}, parse_overrides(overrides))
    return doc, from_dict(ServeConfig, args)


def http_options(doc: dict) -> tuple[str, int]:
    http = doc.get("http_options") or {}
    return str(http.get("host", "127.0.0.1")), int(http.get("port", 8000))
