"""Cross-encoder reranker objective: localized contrastive estimation over [pos, negs].

The model is ``AutoModelForSequenceClassification`` with one logit, built from an encoder's
weights (``minilm``); the export is the folder ``sentence_transformers.CrossEncoder`` and
``rayrag.models.reranker`` load.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from ...losses import localized_contrastive
from ...models.pair_scoring import CrossEncoderScorer, PairScorer, cross_encoder_inputs
from ...models.reranker import write_meta
from ..examples import Group
from .base import RerankerObjective, enable_checkpointing
from .registry import ObjectiveSpec, register


class CrossEncoderObjective(RerankerObjective):
    def build(self, model_path: str) -> torch.nn.Module:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        model = AutoModelForSequenceClassification.from_pretrained(model_path, num_labels=1, dtype=torch.float32)
        enable_checkpointing(model, self.cfg)
        return model

    def collate(self, groups: Sequence[Group]) -> dict[str, torch.Tensor]:
        return cross_encoder_inputs(self.tokenizer, [g.query for g in groups for _ in g.docs],
                                    [t for g in groups for t in g.docs], self.cfg.doc_max_length)

    def loss(self, engine, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """A cross-encoder loss is called as ``loss(scores)``: [Q, g], each row's positive first."""
        logits = engine(**batch).logits.float().view(-1, self.cfg.group_size)  # [Q, g]
        return self.spec.loss(logits)

    def save(self, module: torch.nn.Module, folder: Path) -> None:
        module.save_pretrained(folder, safe_serialization=True)
        self.tokenizer.save_pretrained(folder)
        write_meta(folder, "cross", self.cfg.max_length)

    def pair_scorer(self, module: torch.nn.Module, device: torch.device) -> PairScorer:
        return CrossEncoderScorer(module, self.tokenizer, self.cfg.max_length, self.eval_batch_size, device)


register(ObjectiveSpec("lce", "cross", localized_contrastive, CrossEncoderObjective, min_group_size=2,
                       summary="localized contrastive estimation over each query's [positive, negatives]"))
