"""Supervised fine-tuning of an LLM reranker on a "yes"/"no" relevance answer.

The pointwise generative ranking objective of monoT5 (Nogueira, Jiang, Pradeep & Lin,
"Document Ranking with a Pretrained Sequence-to-Sequence Model", Findings of EMNLP 2020),
applied to a decoder LM: the next token after the prompt is trained to be " yes" for relevant
pairs and " no" otherwise (cross-entropy over the whole vocabulary, as in SFT). At inference
the score is ``logit(yes) - logit(no)``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def yes_no_sft(next_token_logits: torch.Tensor, relevant: torch.Tensor, yes_id: int, no_id: int) -> torch.Tensor:
    """next_token_logits: [N, V] at each prompt's end; relevant: [N] bool -> scalar mean CE."""
    target = torch.where(relevant, torch.full_like(relevant, yes_id, dtype=torch.long),
                         torch.full_like(relevant, no_id, dtype=torch.long))  # [N]
    return F.cross_entropy(next_token_logits.float(), target)
