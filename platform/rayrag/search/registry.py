"""Retriever names used in configs -> constructed retrievers.

  bm25                 BM25 (bm25s)
  minilm               dense exact search with the built-in MiniLM
  splade-tiny          SPLADE with the built-in SPLADE-tiny
  dense:<model>        dense exact search with any model name, folder or HF id
  splade:<model>       SPLADE with any masked-LM name, folder or HF id
"""
from __future__ import annotations

from typing import Any

from ..assets import BUILTINS
from ..errors import ConfigError
from .base import Retriever


def retriever_names() -> list[str]:
    return ["bm25"] + [n for n, b in BUILTINS.items() if b.kind in ("dense", "splade")] + [
        "dense:<model>", "splade:<model>"]


def validate_spec(spec: str) -> None:
    kind, _, arg = spec.partition(":")
    if spec == "bm25" or (spec in BUILTINS and BUILTINS[spec].kind in ("dense", "splade")):
        return
    if kind in ("dense", "splade") and arg:
        return
    raise ConfigError(f"unknown retriever {spec!r}; valid: {', '.join(retriever_names())}")


def build_retriever(spec: str, options: dict[str, Any] | None = None) -> Retriever:
    """``options`` are keyword arguments for the retriever class (batch_size, max_length, ...)."""
    validate_spec(spec)
    options = dict(options or {})
    if spec == "bm25":
        from .bm25 import BM25Retriever

        return BM25Retriever(**options)
    kind, _, model = spec.partition(":")
    if not model:  # a built-in name
        kind, model = BUILTINS[spec].kind, spec
    if kind == "dense":
        from .dense import DenseRetriever

        return DenseRetriever(model, name=spec, **options)
    from .sparse import SpladeRetriever

    return SpladeRetriever(model, name=spec, **options)
