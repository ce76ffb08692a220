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


def _st_max_length(path: str) -> int | None:
    cfg = Path(path) / "sentence_bert_config.json"
    if cfg.is_file():
        return json.loads(cfg.read_text()).get("max_seq_length")
    return None


class DenseEncoder:
    """``encode(texts) -> float32 [N, D]``, L2-normalised by default (so dot = cosine)."""

    def __init__(self, model: str, pooling: str | None = None, max_length: int | None = None,
                 normalize: bool = True, query_prefix: str = "", doc_prefix: str = "",
                 device: str | None = None):
        from transformers import AutoModel, AutoTokenizer

        resolved = resolve_model(model)
        self.name = model
        self.pooling = pooling or resolved.pooling or "mean"
        if self.pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {self.pooling!r}; choose from {POOLINGS}")
        self.max_length = max_length or _st_max_length(resolved.path) or 512
        self.normalize = normalize
        self.query_prefix, self.doc_prefix = query_prefix, doc_prefix
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.tokenizer = AutoTokenizer.from_pretrained(resolved.path)
        if self.pooling == "last":
            self.tokenizer.padding_side = "right"
            if self.tokenizer.pad_token is None:
                self.tokenizer.pad_token = self.tokenizer.eos_token
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
