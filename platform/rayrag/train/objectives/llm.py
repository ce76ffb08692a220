"""LLM reranker objective: SFT of a causal LM to answer " yes" / " no" to a relevance prompt."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ...losses import yes_no_sft
from ...models.reranker import LLM_PROMPT, llm_pair_inputs, load_llm_tokenizer, write_meta, yes_no_ids
from ..examples import Group
from .base import RerankerObjective, apply_lora, enable_checkpointing, unwrap_peft
from .registry import ObjectiveSpec, register


class LLMRerankerObjective(RerankerObjective):
    eval_batch_size = 16

    def build(self, model_path: str) -> torch.nn.Module:
        from transformers import AutoModelForCausalLM

        self.tokenizer = load_llm_tokenizer(model_path)
        self.yes_id, self.no_id = yes_no_ids(self.tokenizer)
        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
        enable_checkpointing(model, self.cfg)
        return apply_lora(model, self.cfg, "CAUSAL_LM")

    def _inputs(self, queries: list[str], docs: list[str], max_length: int | None = None) -> dict[str, torch.Tensor]:
        return dict(llm_pair_inputs(self.tokenizer, LLM_PROMPT, queries, docs, max_length or self.cfg.doc_max_length))

    def collate(self, groups: Sequence[Group]) -> dict[str, torch.Tensor]:
        batch = self._inputs([g.query for g in groups for _ in g.docs], [t for g in groups for t in g.docs])
        batch["relevant"] = torch.tensor([i == 0 for g in groups for i in range(len(g.docs))])  # [Q*g]
        return batch

    def _last_logits(self, model, batch) -> torch.Tensor:
        # logits_to_keep=1: only the last position's [V] logits, not [T, V] per row.
        return model(**batch, logits_to_keep=1).logits[:, -1]  # [N, V]

    def loss(self, engine, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """An LLM reranker loss is called as ``loss(next_token_logits [N, V], relevant [N], yes_id, no_id)``."""
        relevant = batch.pop("relevant")
        return self.spec.loss(self._last_logits(engine, batch), relevant, self.yes_id, self.no_id)

    def save(self, module: torch.nn.Module, folder: Path) -> None:
        unwrap_peft(module).save_pretrained(folder, safe_serialization=True)
        self.tokenizer.save_pretrained(folder)
        write_meta(folder, "llm", self.cfg.max_length, prompt=LLM_PROMPT)

    def score_batch(self, module: torch.nn.Module, query: str, docs: list[str], device) -> np.ndarray:
        enc = {k: v.to(device) for k, v in self._inputs([query] * len(docs), docs, self.cfg.max_length).items()}
        logits = self._last_logits(module, enc)  # [B, V]
        return (logits[:, self.yes_id] - logits[:, self.no_id]).float().cpu().numpy()


register(ObjectiveSpec("llm_yesno", "llm", yes_no_sft, LLMRerankerObjective, min_group_size=2,
                       summary='SFT of a causal LM on " yes"/" no" after a relevance prompt'))
