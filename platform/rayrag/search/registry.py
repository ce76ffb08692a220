"""Retriever names used in configs -> constructed retrievers.

  bm25                       BM25 (bm25s)
  minilm, splade-tiny        built-in dense / SPLADE models, exact search
  dense:<model>              dense exact search with any model name, folder or HF id
  splade:<model>             SPLADE with any masked-LM name, folder or HF id
  <dense>+flat|hnsw|ivfpq    the dense retriever searched through a FAISS index (minilm+hnsw)
  index:<folder>             a saved index (from the index job); its query encoder from its manifest
  reasoning:<folder>         an LREM reasoning embedder (train-reasoning); options.reasoning on|off|auto
  rrf(a,b,...)               reciprocal rank fusion of the parts
  hybrid(a,b,...)            weighted sum of per-query min-max normalised scores
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass

from ..assets import BUILTINS
from ..config import split_top_level, to_dict
from ..errors import ConfigError
from .base import Retriever
from .options import RetrieverOptions

ANN_KINDS = ("flat", "hnsw", "ivfpq")
FUSIONS = ("rrf", "hybrid")


@dataclass(frozen=True)
class Spec:
    kind: str  # bm25 | dense | splade | index | reasoning | rrf | hybrid
    arg: str = ""  # model name / folder
    ann: str | None = None
    parts: tuple["Spec", ...] = ()

    def models(self) -> list[str]:
        own = [self.arg] if self.kind in ("dense", "splade") else []
        return own + [m for p in self.parts for m in p.models()]

    def leaves(self) -> list["Spec"]:
        """The component retrievers a fusion is made of (each once, first-seen order); itself otherwise."""
        if self.kind not in FUSIONS:
            return [self]
        return list(dict.fromkeys(leaf for p in self.parts for leaf in p.leaves()))


def leaf_key(spec: Spec, options: RetrieverOptions) -> tuple[Spec, str]:
    """What makes two component retrievers the same: the spec and every option (a subset of the
    options would do, but a retriever shared by mistake would silently change results)."""
    return spec, json.dumps(to_dict(options), sort_keys=True)


def retriever_names() -> list[str]:
    return ["bm25", "minilm", "splade-tiny", "dense:<model>", "splade:<model>", "<dense>+hnsw|ivfpq|flat",
            "index:<folder>", "reasoning:<folder>", "rrf(a,b,...)", "hybrid(a,b,...)"]


def parse_spec(spec: str) -> Spec:
    s = spec.strip()
    for fusion in FUSIONS:
        if s.startswith(fusion + "(") and s.endswith(")"):
            parts = tuple(parse_spec(p) for p in split_top_level(s[len(fusion) + 1:-1]))
            if len(parts) < 2:
                raise ConfigError(f"{spec!r}: fusion needs at least two retrievers")
            return Spec(fusion, parts=parts)
    base, plus, ann = s.partition("+")
    if plus and ann not in ANN_KINDS:
        raise ConfigError(f"{spec!r}: index kind after '+' must be one of {ANN_KINDS}")
    kind, colon, arg = base.partition(":")
    if base == "bm25":
        if plus:
            raise ConfigError(f"{spec!r}: '+{ann}' applies to dense retrievers only")
        return Spec("bm25")
    if base in BUILTINS and BUILTINS[base].kind in ("dense", "splade"):
        kind, arg = BUILTINS[base].kind, base
    elif not (colon and arg and kind in ("dense", "splade", "index", "reasoning")):
        raise ConfigError(f"unknown retriever {spec!r}; valid: {', '.join(retriever_names())}")
    if plus and kind != "dense":
        raise ConfigError(f"{spec!r}: '+{ann}' applies to dense retrievers only")
    return Spec(kind, arg, ann or None)


def split_label(entry: str) -> tuple[str, str]:
    """``"minilm=index:out/flat"`` -> ``("minilm", "index:out/flat")``; no label: the spec names itself."""
    label, eq, spec = entry.partition("=")
    if not eq:
        return entry.strip(), entry.strip()
    if not label.strip() or not spec.strip():
        raise ConfigError(f"retriever entry {entry!r} must be 'label=spec' with both parts non-empty")
    return label.strip(), spec.strip()


def unique_labels(entries: list[str]) -> list[str]:
    """The labels of a job's ``retrievers`` list, refused when empty or when two share a label
    (results, runs and paired tests are keyed by it)."""
    if not entries:
        raise ConfigError("retrievers: give at least one retriever")
    labels = [split_label(r)[0] for r in entries]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"retrievers: duplicate names in {labels}")
    return labels


def validate_spec(entry: str) -> Spec:
    return parse_spec(split_label(entry)[1])


def build_retriever(spec: str, options: RetrieverOptions | None = None, shared: dict | None = None) -> Retriever:
    """The retriever for ``spec``. ``shared`` (a dict kept by the caller across calls) holds the
    component retrievers built so far: a component with the same spec and options (``leaf_key``)
    is reused, not built again, so a fusion and its parts can be indexed once
    (``fusion.components``)."""
    return _build(parse_spec(spec), spec.strip(), options or RetrieverOptions(), shared)


def _build(s: Spec, name: str, o: RetrieverOptions, shared: dict | None = None) -> Retriever:
    if s.kind not in FUSIONS and shared is not None:
        key = leaf_key(s, o)
        if key not in shared:
            shared[key] = _build(s, name, o)
        return shared[key]
    if s.kind == "bm25":
        from .bm25 import BM25Retriever

        return BM25Retriever(k1=o.bm25_k1, b=o.bm25_b, name=name)
    if s.kind == "dense":
        from .dense import DenseRetriever

        ann = None
        if s.ann:
            ann = copy.deepcopy(o.faiss)
            ann.kind = s.ann
        return DenseRetriever(s.arg, batch_size=o.batch_size, max_length=o.max_length, name=name, ann=ann)
    if s.kind == "splade":
        from .sparse import SpladeRetriever

        return SpladeRetriever(s.arg, batch_size=o.sparse_batch_size, max_length=o.sparse_max_length, name=name)
    if s.kind == "reasoning":
        from .reasoning import ReasoningRetriever

        return ReasoningRetriever(s.arg, mode=o.reasoning, margin=o.reasoning_margin, cot=o.cot,
                                  batch_size=o.batch_size, name=name)
    if s.kind == "index":
        from .indexed import IndexRetriever

        # options.reasoning's default (on) means nothing to an index of a plain embedder; off or
        # auto on such an index is refused by the encoder loader rather than ignored
        return IndexRetriever(s.arg, name=name, batch_size=o.batch_size, max_length=o.max_length, faiss=o.faiss,
                              reasoning=None if o.reasoning == "on" else o.reasoning,
                              reasoning_margin=o.reasoning_margin, cot=o.cot,
                              shard_actor_cpus=o.shard_actor_cpus if o.shard_actors else None)
    from .fusion import FusionRetriever

    parts = [_build(p, _name(p), o, shared) for p in s.parts]
    return FusionRetriever(parts, "rrf" if s.kind == "rrf" else "wsum", name, rrf_k=o.rrf_k,
                           weights=o.fusion_weights, depth=o.fusion_depth)


def _name(s: Spec) -> str:
    if s.kind == "bm25":
        return "bm25"
    if s.kind in FUSIONS:
        return f"{s.kind}({','.join(_name(p) for p in s.parts)})"
    base = s.arg if s.arg in BUILTINS else f"{s.kind}:{s.arg}"
    return base + (f"+{s.ann}" if s.ann else "")
