"""SPLADE encoder: term weights ``max_t log(1 + relu(logits[t, v]))`` over the MLM vocabulary.

Formal, Lassance, Piwowarski & Clinchant, "SPLADE v2: Sparse Lexical and Expansion Model
for Information Retrieval" (2021), max-pooling variant.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import scipy.sparse as sp
import torch

from ..assets import resolve_model
from .batching import length_sorted_batches


class SpladeEncoder:
    """``encode(texts) -> scipy.sparse.csr_matrix [N, vocab]`` of non-negative term weights."""

    def __init__(self, model: str, max_length: int = 256, top_k: int | None = None,
                 device: str | None = None):
        from transformers import AutoModelForMaskedLM, AutoTokenizer

        resolved = resolve_model(model)
        self.name = model
        self.max_length = max_length
        self.top_k = top_k  # keep only the k heaviest terms per text (index size control)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.tokenizer = AutoTokenizer.from_pretrained(resolved.path)
        self.model = AutoModelForMaskedLM.from_pretrained(resolved.path).to(self.device).eval()
        self.vocab_size = int(self.model.config.vocab_size)

    @torch.inference_mode()
    def _encode_batch(self, texts: list[str]) -> torch.Tensor:
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="pt").to(self.device)
        weights = splade_reps(self.model, enc["input_ids"], enc["attention_mask"])  # [B, V]
        if self.top_k is not None and self.top_k < weights.shape[1]:
            vals, idx = weights.topk(self.top_k, dim=1)
            weights = torch.zeros_like(weights).scatter_(1, idx, vals)
        return weights.float().cpu()

    def encode(self, texts: Sequence[str], batch_size: int = 16, desc: str | None = None,
               progress: bool = True) -> sp.csr_matrix:
        texts = list(texts)
        rows, cols, vals = [], [], []
        for idx, batch in length_sorted_batches(texts, batch_size, desc, progress):
            w = self._encode_batch(batch)
            r, c = torch.nonzero(w, as_tuple=True)
            rows.append(idx[r.numpy()])
            cols.append(c.numpy())
            vals.append(w[r, c].numpy())
        if not rows:
            return sp.csr_matrix((len(texts), self.vocab_size), dtype=np.float32)
        return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                             shape=(len(texts), self.vocab_size), dtype=np.float32)


def _token_logits(model: torch.nn.Module, input_ids: torch.Tensor,
                  attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """MLM logits of the real (non-pad) tokens only: [Ntok, V], plus tokens per text [B].

    The vocabulary projection is the whole cost (Ntok x H x 30k); skipping pad tokens and
    never materialising [B, T, V] for them is what keeps SPLADE encoding affordable on CPU.
    """
    mask = attention_mask.bool()  # [B, T]
    lengths = mask.sum(1)  # [B]
    head = getattr(model, "cls", None)  # BERT-family MLM head
    if head is not None:
        hidden = model.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # [B, T, H]
        return head(hidden[mask]), lengths  # [Ntok, V]
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits  # [B, T, V]
    return logits[mask], lengths


def splade_reps(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """SPLADE term weights [B, V] (float32) of a masked LM: ``max_t log(1 + relu(logits[t]))``.

    Differentiable: training (``train/objectives/sparse.py``) calls it with gradients, encoding
    (``SpladeEncoder``) under ``inference_mode``, so a trained model is scored as it was trained.
    log1p(relu(.)) is monotonic, so the raw logits are max-pooled first and only [B, V] is
    transformed: the same values (and the same gradient wherever the max is unique).
    """
    logits, lengths = _token_logits(model, input_ids, attention_mask)  # [Ntok, V], [B]
    pooled = torch.stack([seg.amax(0) for seg in logits.split(lengths.tolist())])  # [B, V]
    return torch.log1p(torch.relu(pooled.float()))
