"""The Serve config file (``serve run`` / ``serve deploy`` / KubeRay ``serveConfigV2``).

One source of truth: ``applications[0].args`` plus the index section of the Retriever's
``user_config`` (``INDEX_FIELDS``; the Ingress's with ``retriever_in_ingress``) are a
ServeConfig. The index section lives there because ``serve deploy`` restarts every replica when
``args`` change, while a changed ``user_config`` is applied in place (the index is swapped under
load, docs/SERVE.md). Everything else in the file
(the ``deployments:`` options Serve applies on top of the code, batching) is generated from the
config by ``rayrag serve build``, in the layout ``serve build`` writes, and
``tests/test_serve_config.py`` fails when the file and its config drift apart.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import yaml

from ..config import merge, from_dict, load_yaml, parse_overrides, to_dict
from ..errors import ConfigError
from .config import INDEX_FIELDS, ServeConfig

IMPORT_PATH = "rayrag.serve.app:build_app"
APP_NAME = "rayrag"


def serve_config(cfg: ServeConfig, host: str = "127.0.0.1", port: int = 8000) -> dict:
    """The Serve deploy schema for ``cfg``; host 127.0.0.1 (``serve build`` would write 0.0.0.0)."""
    deployments = [{"name": "Ingress", **cfg.ingress_options()}]
    if not cfg.retriever_in_ingress:
        deployments.append({"name": "Retriever", **cfg.retriever.serve_options(),
                            "user_config": cfg.retriever_user_config()})
    if cfg.reranker:
        deployments.append({"name": "Reranker", **cfg.rerank.serve_options(), "user_config": cfg.rerank.batching()})
    return {
        "proxy_location": "EveryNode",
        "http_options": {"host": host, "port": port},
        "applications": [{"name": APP_NAME, "route_prefix": "/", "import_path": IMPORT_PATH,
                          "args": app_args(cfg), "deployments": deployments}],
    }


def app_args(cfg: ServeConfig) -> dict:
    """``args`` without the index section, which the Retriever's ``user_config`` holds."""
    return {k: v for k, v in to_dict(cfg).items() if k not in INDEX_FIELDS}


def app_config(app: dict, overrides: Iterable[str] = ()) -> ServeConfig:
    """One application of the file as a validated ServeConfig: its args, the index section of its
    Retriever's user_config over them, and ``overrides`` (``key=value``) over both."""
    by_name = {d.get("name"): d.get("user_config") or {} for d in app.get("deployments") or []}
    # the Retriever's; with the retriever inside the ingress, the Ingress's
    user_config = by_name.get("Retriever") or by_name.get("Ingress") or {}
    index = {k: v for k, v in user_config.items() if k in INDEX_FIELDS}
    return from_dict(ServeConfig, merge(merge(app.get("args") or {}, index), parse_overrides(overrides)))


def header(path: str) -> str:
    return (f"# serve run {path}\n"
            f"# cluster: RAY_AUTH_MODE=token serve deploy {path} --address http://127.0.0.1:8265\n"
            f"# rayrag: python -m jobs.serve run --config {path} [key=value ...]\n"
            f"# Generated from applications[0].args and the index section of the Retriever's user_config\n"
            f"# (together a rayrag ServeConfig, see docs/SERVE.md) by\n"
            f"#   python -m jobs.serve build --config {path} --output {path}\n"
            f"# Edit args, then rebuild: the deployments section must match them (tests check).\n"
            f"# To swap the index under load, edit index (and corpus, query_model, ...) in the Retriever's\n"
            f"# user_config and `serve deploy` again: replicas load it beside the old one (no restart).\n")


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
    return doc, app_config(ours[0], overrides)


def http_options(doc: dict) -> tuple[str, int]:
    http = doc.get("http_options") or {}
    return str(http.get("host", "127.0.0.1")), int(http.get("port", 8000))
