"""Cross-encoder reranker objective: localized contrastive estimation over [pos, negs].

The model is ``AutoModelForSequenceClassification`` with one logit, built from an encoder's
weights (``minilm``); the export is the folder ``sentence_transformers.CrossEncoder`` and
``rayrag.models.reranker`` load.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ...losses import localized_contrastive
from ...models.reranker import write_meta
from ..examples import Group
from .base import Objective, enable_checkpointing


class CrossEncoderObjective(Objective):
    def build(self, model_path: str) -> torch.nn.Module:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        model = AutoModelForSequenceClassification.from_pretrained(model_path, num_labels=1, dtype=torch.float32)
        enable_checkpointing(model, self.cfg)
        return model

    def _pairs(self, queries: list[str], docs: list[str], max_length: int | None = None) -> dict[str, torch.Tensor]:
        return dict(self.tokenizer(queries, docs, padding=True, truncation="only_second",
                                   max_length=max_length or self.cfg.doc_max_length, return_tensors="pt"))

    def collate(self, groups: Sequence[Group]) -> dict[str, torch.Tensor]:
        return self._pairs([g.query for g in groups for _ in g.docs], [t for g in groups for t in g.docs])

    def loss(self, engine, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = engine(**batch).logits.float().view(-1, self.cfg.group_size)  # [Q, g]
        return localized_contrastive(logits)

    def save(self, module: torch.nn.Module, folder: Path) -> None:
        module.save_pretrained(folder, safe_serialization=True)
        self.tokenizer.save_pretrained(folder)
        write_meta(folder, "cross", self.cfg.max_length)

    @torch.no_grad()
    def evaluate(self, module: torch.nn.Module, device: torch.device) -> dict[str, float]:
        from .evaluation import rerank_eval

        def scorer(query: str, docs) -> np.ndarray:
            out = []
            for s in range(0, len(docs), 32):
                enc = {k: v.to(device) for k, v in self._pairs([query] * len(docs[s:s + 32]), list(docs[s:s + 32]),
                                                                 self.cfg.max_length).items()}
                out.append(module(**enc).logits[:, 0].float().cpu().numpy())
            return np.concatenate(out) if out else np.zeros(0, np.float32)

        was_training = module.training
        module.eval()
        try:
            return rerank_eval(self.cfg, self.eval_data, scorer)
        finally:
            module.train(was_training)
