"""Rerankers: score (query, document) pairs jointly.

Two kinds, both plain HF folders so other tools load them too:

* ``cross``: a sequence classifier with one logit (``AutoModelForSequenceClassification``,
  ``num_labels=1``), the layout ``sentence_transformers.CrossEncoder`` loads. Built from an
  encoder such as ``minilm``; before training its head does not exist yet.
* ``llm``: a causal LM asked whether the document answers the query; the score is the
  log-odds ``logit("yes") - logit("no")`` of the next token (as in RankLLaMA-style pointwise
  LLM rerankers and monoT5's "true"/"false" scoring, Nogueira et al. 2020).

A trained folder carries ``rayrag_reranker.json`` (kind, max_length, prompt) so loading needs
no extra flags.

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
from ..errors import DataError

META = "rayrag_reranker.json"
KINDS = ("cross", "llm")
LLM_PROMPT = ("Judge whether the document answers the query. Reply yes or no.\n"
              "Query: {query}\nDocument: {document}\nRelevant:")


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


class UntrainedReranker(DataError):
    """The checkpoint lacks the weights that score pairs: they would be initialised at load time."""


def _check_trained(model: str, info: dict, allow_untrained: bool) -> None:
    missing = sorted(info.get("missing_keys") or [])
    if missing and not allow_untrained:
        raise UntrainedReranker(
            f"reranker {model!r} has no trained scoring head: {', '.join(missing[:4])}"
            f"{' ...' if len(missing) > 4 else ''} would be initialised at random when loading it. "
            f"Serve or evaluate a reranker that was trained (rayrag train-reranker, or a published "
            f"cross-encoder), e.g. models:/<registered-name>/<version>")


def yes_no_ids(tokenizer) -> tuple[int, int]:
    """Token ids of " yes" / " no" (the leading space is how they follow "Relevant:")."""
    ids = []
    for word in (" yes", " no"):
        toks = tokenizer.encode(word, add_special_tokens=False)
        ids.append(toks[-1])
    return ids[0], ids[1]


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
        if not documents:
            return np.zeros(0, dtype=np.float32)
        # Length-sorted batches: pairs of similar length pad little.
        order = np.argsort([-len(d) for d in documents], kind="stable")
        out = np.empty(len(documents), dtype=np.float32)
        for s in range(0, len(order), self.batch_size):
            idx = order[s:s + self.batch_size]
            out[idx] = self._score_batch(query, [documents[i] for i in idx])
        return out

    def _score_batch(self, query: str, docs: list[str]) -> np.ndarray:
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

    @torch.inference_mode()
    def _score_batch(self, query: str, docs: list[str]) -> np.ndarray:
        enc = self.tokenizer([query] * len(docs), docs, padding=True, truncation="only_second",
                             max_length=self.max_length, return_tensors="pt").to(self.device)
        return self.model(**enc).logits[:, 0].float().cpu().numpy()  # [B]


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
        self.yes_id, self.no_id = yes_no_ids(self.tokenizer)
        self._cap_length()

    @torch.inference_mode()
    def _score_batch(self, query: str, docs: list[str]) -> np.ndarray:
        enc = llm_pair_inputs(self.tokenizer, self.prompt, [query] * len(docs), docs, self.max_length)
        enc = {k: v.to(self.device) for k, v in enc.items()}
        logits = self.model(**enc).logits[:, -1]  # [B, V]: left padding puts every prompt's end last
        return (logits[:, self.yes_id] - logits[:, self.no_id]).float().cpu().numpy()


def load_llm_tokenizer(path: str):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def llm_pair_inputs(tokenizer, prompt: str, queries: Sequence[str], docs: Sequence[str], max_length: int) -> dict:
    """Left-padded prompts; the document is cut (not the instruction tail) when too long."""
    budget = max_length - len(tokenizer.encode(prompt.format(query="", document=""), add_special_tokens=False))
    texts = []
    for q, d in zip(queries, docs):
        q_ids = tokenizer.encode(q, add_special_tokens=False)[: max(8, budget // 4)]
        d_ids = tokenizer.encode(d, add_special_tokens=False)[: max(8, budget - len(q_ids))]
        texts.append(prompt.format(query=tokenizer.decode(q_ids), document=tokenizer.decode(d_ids)))
    return tokenizer(texts, padding=True, return_tensors="pt", add_special_tokens=False)


def load_reranker(model: str, kind: str | None = None, **kw) -> Reranker:
    """A reranker from a built-in name, folder or HF id; ``kind`` defaults to the folder's own.

    Raises ``UntrainedReranker`` for a checkpoint without its scoring weights unless
    ``allow_untrained=True`` (development only)."""
    kind = kind or reranker_kind(resolve_model(model).path)
    if kind not in KINDS:
        raise ValueError(f"unknown reranker kind {kind!r}; choose from {KINDS}")
    return (CrossEncoderReranker if kind == "cross" else LLMReranker)(model, **kw)
