"""Dense text encoder over any HF model: encoder-only (mean/CLS pooling) or decoder (last token)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..assets import resolve_model
from .batching import encode_in_order

POOLINGS = ("mean", "cls", "last")


def pool(hidden: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    """hidden [B, T, H], mask [B, T] -> [B, H]."""
    if how == "mean":
        m = mask.unsqueeze(-1).to(hidden.dtype)  # [B, T, 1]
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
    if how == "cls":
        return hidden[:, 0]
    if how == "last":
        # Works for left and right padding: index of the last attended token per row.
        last = mask.shape[1] - 1 - mask.flip(1).float().argmax(1)  # [B]
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    raise ValueError(f"unknown pooling {how!r}; choose from {POOLINGS}")


def load_tokenizer(path: str, pooling: str, append_eos: bool | None = None):
    """The tokenizer a dense model is used with. Last-token pooling reads the EOS token's state by
    default: the tokenizer appends EOS to every input (after truncation, so it is never cut off),
    the convention of LLM embedders (E5-Mistral, Qwen3-Embedding). Without it the pooled token is
    whatever word a text happens to end on. ``append_eos=False`` pools that last word on purpose
    (a recipe that trains better without EOS); ``None`` keeps what an exported embedder's
    (sentence-transformers) folder was saved with, and appends EOS for a raw language model.
    Saved with the model, so sentence-transformers and ``AutoTokenizer`` reproduce it."""
    from transformers import AutoTokenizer

    if pooling != "last":
        return AutoTokenizer.from_pretrained(path)
    if append_eos is None and (Path(path) / "modules.json").is_file():
        tok = AutoTokenizer.from_pretrained(path)  # its own choice, as sentence-transformers reads it
    else:
        want = append_eos is not False  # a raw language model gets EOS unless told otherwise
        tok = AutoTokenizer.from_pretrained(path, add_eos_token=want)
        if want and tok.eos_token_id is None:
            raise ValueError(f"{path}: last-token pooling needs a tokenizer with an EOS token")
        if (tok("a")["input_ids"][-1] == tok.eos_token_id) != want:
            raise ValueError(f"{path}: the tokenizer ({type(tok).__name__}) ignores add_eos_token={want}, "
                             f"which this last-token pooling needs")
    tok.padding_side = "right"  # pool() finds the last attended token either way
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def model_pooling(path: str) -> str | None:
    """Pooling named by a sentence-transformers folder's Pooling module, if it has one."""
    modules = Path(path) / "modules.json"
    if not modules.is_file():
        return None
    for m in json.loads(modules.read_text()):
        if m.get("type", "").endswith("Pooling"):
            cfg_file = Path(path) / m.get("path", "") / "config.json"
            if not cfg_file.is_file():
                return None
            cfg = json.loads(cfg_file.read_text())
            mode = cfg.get("pooling_mode")  # newer sentence-transformers: one name (or a list)
            if isinstance(mode, list):
                mode = mode[0] if len(mode) == 1 else None
            if mode is None:  # older layout: one boolean per mode
                mode = next((k for k in ("mean", "cls", "lasttoken")
                             if cfg.get({"mean": "pooling_mode_mean_tokens", "cls": "pooling_mode_cls_token",
                                         "lasttoken": "pooling_mode_lasttoken"}[k])), None)
            return {"mean": "mean", "cls": "cls", "lasttoken": "last"}.get(mode)
    return None


def model_prompts(path: str) -> dict[str, str]:
    """The ``prompts`` of a sentence-transformers folder (e.g. an instruction for queries)."""
    cfg = Path(path) / "config_sentence_transformers.json"
    if cfg.is_file():
        return json.loads(cfg.read_text()).get("prompts") or {}
    return {}


def _st_max_length(path: str) -> int | None:
    """The truncation length sentence-transformers applies to a folder: ``max_seq_length`` in
    ``sentence_bert_config.json`` or, where that is absent (sentence-transformers 6 writes it to
    the tokenizer instead), the tokenizer's ``model_max_length`` when it is a real limit."""
    for name, key in (("sentence_bert_config.json", "max_seq_length"), ("tokenizer_config.json", "model_max_length")):
        cfg = Path(path) / name
        value = json.loads(cfg.read_text()).get(key) if cfg.is_file() else None
        if isinstance(value, int) and 0 < value < 1_000_000:  # HF writes ~1e30 for "no limit"
            return value
    return None


class DenseEncoder:
    """``encode(texts) -> float32 [N, D]``, L2-normalised by default (so dot = cosine)."""

    def __init__(self, model: str, pooling: str | None = None, max_length: int | None = None,
                 normalize: bool = True, query_prefix: str | None = None, doc_prefix: str | None = None,
                 device: str | None = None, append_eos: bool | None = None):
        from transformers import AutoModel

        resolved = resolve_model(model)
        self.name = model
        self.pooling = pooling or resolved.pooling or model_pooling(resolved.path) or "mean"
        if self.pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {self.pooling!r}; choose from {POOLINGS}")
        self.max_length = max_length or _st_max_length(resolved.path) or 512
        self.normalize = normalize
        prompts = model_prompts(resolved.path)  # a trained LLM embedder carries its query instruction
        self.query_prefix = prompts.get("query", "") if query_prefix is None else query_prefix
        self.doc_prefix = prompts.get("document", "") if doc_prefix is None else doc_prefix
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.tokenizer = load_tokenizer(resolved.path, self.pooling, append_eos)
        self.model = AutoModel.from_pretrained(resolved.path).to(self.device).eval()
        self.dim = int(self.model.config.hidden_size)
        limit = getattr(self.model.config, "max_position_embeddings", None)
        if limit and self.max_length > limit:  # longer inputs would index past the position table
            self.max_length = int(limit)

    @torch.inference_mode()
    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="pt").to(self.device)
        hidden = self.model(**enc).last_hidden_state  # [B, T, H]
        emb = pool(hidden, enc["attention_mask"], self.pooling)  # [B, H]
        if self.normalize:
            emb = F.normalize(emb, dim=-1)
        return emb.float().cpu().numpy()

    def encode(self, texts: Sequence[str], batch_size: int = 64, desc: str | None = None,
               progress: bool = True, prefix: str = "") -> np.ndarray:
        texts = [prefix + t for t in texts] if prefix else list(texts)
        return encode_in_order(texts, batch_size, self._encode_batch, self.dim, desc, progress)

    def encode_queries(self, texts: Sequence[str], **kw) -> np.ndarray:
        return self.encode(texts, prefix=self.query_prefix, **kw)

    def encode_docs(self, texts: Sequence[str], **kw) -> np.ndarray:
        return self.encode(texts, prefix=self.doc_prefix, **kw)
