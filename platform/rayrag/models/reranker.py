"""Rerankers: score (query, document) pairs jointly.

Two kinds, both plain HF folders so other tools load them too:

* ``cross``: a sequence classifier with one logit (``AutoModelForSequenceClassification``,
  ``num_labels=1``), the layout ``sentence_transformers.CrossEncoder`` loads. Built from an
  encoder such as ``minilm``; before training its head does not exist yet.
* ``llm``: a causal LM asked whether the document answers the query; the score is the
  log-odds ``logit("yes") - logit("no")`` of the next token (as in RankLLaMA-style pointwise
  LLM rerankers and monoT5's "true"/"false" scoring, Nogueira et al. 2020).

A trained folder carries ``rayrag_reranker.json`` (kind, max_length, prompt) so loading needs
no extra flags. This module loads; how a pair is scored is ``pair_scoring``'s, shared with
Serve and the training objectives' evaluation.

Loading refuses a model whose scoring weights are missing from the checkpoint (transformers
would initialise them at random, and its scores would mean nothing), whatever the config class
says: an encoder such as ``minilm`` is not a reranker until it is trained. ``allow_untrained``
(the development flag) loads such a stand-in anyway, with a seeded head.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..assets import resolve_model
from ..errors import DataError, UntrainedReranker  # noqa: F401 (importable from here too)
from .pair_scoring import LLM_PROMPT, CrossEncoderScorer, PairScorer, YesNoScorer

META = "rayrag_reranker.json"
KINDS = ("cross", "llm")


def reranker_kind(path: str | Path) -> str:
    """``cross`` or ``llm`` for a model folder: its metadata, else its architecture."""
    path = Path(path)
    meta = path / META
    if meta.is_file():
        return json.loads(meta.read_text())["kind"]
    cfg = path / "config.json"
    archs = json.loads(cfg.read_text()).get("architectures") or [] if cfg.is_file() else []
    return "llm" if any(a.endswith("ForCausalLM") for a in archs) else "cross"


def read_meta(path: str | Path) -> dict:
    meta = Path(path) / META
    return json.loads(meta.read_text()) if meta.is_file() else {}


def write_meta(path: str | Path, kind: str, max_length: int, **extra) -> None:
    (Path(path) / META).write_text(json.dumps({"kind": kind, "max_length": max_length, **extra}, indent=2))


def _check_trained(model: str, info: dict, allow_untrained: bool) -> None:
    missing = sorted(info.get("missing_keys") or [])
    if missing and not allow_untrained:
        raise UntrainedReranker(
            f"reranker {model!r} has no trained scoring head: {', '.join(missing[:4])}"
            f"{' ...' if len(missing) > 4 else ''} would be initialised at random when loading it. "
            f"Serve or evaluate a reranker that was trained (rayrag train-reranker, or a published "
            f"cross-encoder), e.g. models:/<registered-name>/<version>")


class Reranker:
    """``score(query, documents) -> float32 [len(documents)]``, higher is more relevant."""

    name: str
    kind: str

    def __init__(self, model: str, max_length: int | None = None, batch_size: int = 32,
                 device: str | None = None, allow_untrained: bool = False):
        resolved = resolve_model(model)
        self.allow_untrained = allow_untrained
        self.name, self.path = model, resolved.path
        meta = read_meta(resolved.path)
        self.max_length = int(max_length or meta.get("max_length") or 256)
        self.batch_size = batch_size
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.meta = meta

    def score(self, query: str, documents: Sequence[str]) -> np.ndarray:
        return self.score_pairs([query] * len(documents), documents)

    def score_pairs(self, queries: Sequence[str], docs: Sequence[str]) -> np.ndarray:
        """float32 [len(docs)]: ``queries[i]`` against ``docs[i]`` (pairs may mix queries)."""
        return self.scorer()(queries, docs)

    def scorer(self) -> PairScorer:
        """This kind's shared scorer, made per call so it sees the current ``max_length``."""
        raise NotImplementedError

    def _cap_length(self) -> None:
        # Longer inputs would index past the position table.
        limit = getattr(self.model.config, "max_position_embeddings", None)
        if limit:
            self.max_length = min(self.max_length, int(limit))


class CrossEncoderReranker(Reranker):
    kind = "cross"

    def __init__(self, model: str, **kw):
        super().__init__(model, **kw)
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        # A stand-in (allow_untrained) gets a seeded head, so every replica and every load of
        # the same stand-in scores alike; a trained folder's head is simply loaded.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            self.model, info = AutoModelForSequenceClassification.from_pretrained(
                self.path, num_labels=1, output_loading_info=True)
        _check_trained(model, info, self.allow_untrained)
        self.model.to(self.device).eval()
        self._cap_length()

    def scorer(self) -> PairScorer:
        return CrossEncoderScorer(self.model, self.tokenizer, self.max_length, self.batch_size, self.device)


class LLMReranker(Reranker):
    kind = "llm"

    def __init__(self, model: str, **kw):
        super().__init__(model, **kw)
        from transformers import AutoModelForCausalLM

        self.prompt = self.meta.get("prompt", LLM_PROMPT)
        self.tokenizer = load_llm_tokenizer(self.path)
        self.model, info = AutoModelForCausalLM.from_pretrained(self.path, dtype=torch.float32,
                                                                output_loading_info=True)
        _check_trained(model, info, self.allow_untrained)
        self.model.to(self.device).eval()
        self._cap_length()

    def scorer(self) -> PairScorer:
        return YesNoScorer(self.model, self.tokenizer, self.max_length, self.batch_size, self.device, self.prompt)


def load_llm_tokenizer(path: str):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_reranker(model: str, kind: str | None = None, **kw) -> Reranker:
    """A reranker from a built-in name, folder or HF id; ``kind`` defaults to the folder's own.

    Raises ``UntrainedReranker`` for a checkpoint without its scoring weights unless
    ``allow_untrained=True`` (development only)."""
    kind = kind or reranker_kind(resolve_model(model).path)
    if kind not in KINDS:
        raise ValueError(f"unknown reranker kind {kind!r}; choose from {KINDS}")
    return (CrossEncoderReranker if kind == "cross" else LLMReranker)(model, **kw)
