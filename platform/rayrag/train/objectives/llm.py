"""LLM reranker objective: SFT of a causal LM to answer " yes" / " no" to a relevance prompt."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from ...losses import yes_no_sft
from ...models.pair_scoring import LLM_PROMPT, PairScorer, YesNoScorer, llm_pair_inputs, next_token_logits, yes_no_ids
from ...models.reranker import load_llm_tokenizer, write_meta
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

    def collate(self, groups: Sequence[Group]) -> dict[str, torch.Tensor]:
        batch = llm_pair_inputs(self.tokenizer, LLM_PROMPT, [g.query for g in groups for _ in g.docs],
                                [t for g in groups for t in g.docs], self.cfg.doc_max_length)
        batch["relevant"] = torch.tensor([i == 0 for g in groups for i in range(len(g.docs))])  # [Q*g]
        return batch

    def loss(self, engine, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """An LLM reranker loss is called as ``loss(next_token_logits [N, V], relevant [N], yes_id, no_id)``."""
        relevant = batch.pop("relevant")
        return self.spec.loss(next_token_logits(engine, batch), relevant, self.yes_id, self.no_id)

    def save(self, module: torch.nn.Module, folder: Path) -> None:
        unwrap_peft(module).save_pretrained(folder, safe_serialization=True)
        self.tokenizer.save_pretrained(folder)
        write_meta(folder, "llm", self.cfg.max_length, prompt=LLM_PROMPT)

    def pair_scorer(self, module: torch.nn.Module, device: torch.device) -> PairScorer:
        return YesNoScorer(module, self.tokenizer, self.cfg.max_length, self.eval_batch_size, device, LLM_PROMPT)


register(ObjectiveSpec("llm_yesno", "llm", yes_no_sft, LLMRerankerObjective, min_group_size=2,
                       summary='SFT of a causal LM on " yes"/" no" after a relevance prompt'))
