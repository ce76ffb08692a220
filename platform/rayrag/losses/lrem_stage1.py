"""LREM stage 1 (cold start): CoT SFT and InfoNCE from one forward pass.

Liu et al., "Large Reasoning Embedding Models" (arXiv 2510.14321):
``L1 = 0.1 * L_SFT + 1.0 * InfoNCE`` between the ``<emb>`` state after the CoT and the item's.
Both terms have the same cross-worker semantics as in one process over the global batch:
InfoNCE gathers every worker's items, L_SFT averages over every worker's CoT tokens.
"""
from __future__ import annotations

import torch

from .cot_sft import cot_sft
from .infonce import infonce


def lrem_stage1(logits: torch.Tensor, input_ids: torch.Tensor, target_mask: torch.Tensor, q: torch.Tensor,
                d: torch.Tensor, sft_weight: float = 0.1, infonce_weight: float = 1.0, temperature: float = 0.05,
                group_size: int | None = None, gather: bool = False) -> torch.Tensor:
    """logits/input_ids/target_mask as ``cot_sft``; q [Q, H] and d [Q*g, H] as ``infonce``."""
    loss = infonce_weight * infonce(q, d, temperature, group_size, gather=gather)
    if sft_weight:
        loss = loss + sft_weight * cot_sft(logits, input_ids, target_mask, gather=gather)
    return loss
