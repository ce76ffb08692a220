"""Next-token loss on the chain-of-thought tokens only (LREM stage 1, O1 Embedder).

Liu et al., "Large Reasoning Embedding Models" (arXiv 2510.14321), cold start:
``L1 = 0.1 * L_SFT + 1.0 * InfoNCE``, where L_SFT is the language-model loss on the CoT tokens
(the query is the prompt and is not learned). Yan et al., "O1 Embedder" (2025), train the same
pair in one forward pass: the thought's LM loss and a contrastive loss at the embedding token.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..distributed import gather_with_grad, world_size


def cot_sft(logits: torch.Tensor, input_ids: torch.Tensor, target_mask: torch.Tensor,
            gather: bool = False) -> torch.Tensor:
    """logits [B, T, V] of a causal LM over input_ids [B, T]; target_mask [B, T] marks the tokens
    to predict (the CoT, and ``</think>`` which closes it). Token t is predicted from position
    t - 1, so position 0 can never be a target. Mean cross-entropy over the marked tokens.

    ``gather=True`` (under torch.distributed): the mean over every worker's marked tokens, as one
    process would compute it over the global batch. Each worker divides its sum by the global
    token count times 1/W, so the engines' gradient averaging gives exactly that mean's
    gradient even when workers hold different numbers of CoT tokens."""
    if logits.shape[:2] != input_ids.shape or input_ids.shape != target_mask.shape:
        raise ValueError(f"shapes disagree: logits {tuple(logits.shape)}, input_ids {tuple(input_ids.shape)}, "
                         f"target_mask {tuple(target_mask.shape)}")
    if bool(target_mask[:, 0].any()):
        raise ValueError("the first token cannot be a target: nothing precedes it")
    pred = logits[:, :-1].reshape(-1, logits.shape[-1])
    tgt = input_ids[:, 1:].reshape(-1)
    m = target_mask[:, 1:].reshape(-1).to(pred.dtype)
    count = m.sum()
    if gather and world_size() > 1:
        count = gather_with_grad(count.detach().view(1)).sum() / world_size()  # global count / W
    if float(count) == 0:
        raise ValueError("no CoT token to learn: every target_mask is empty")
    return (F.cross_entropy(pred, tgt, reduction="none") * m).sum() / count
