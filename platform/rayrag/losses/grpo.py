"""GRPO: group-relative advantages and the token-level clipped policy-gradient loss.

Shao et al., "DeepSeekMath" (2024), section 4.1: for each prompt, G outputs are sampled from the
old policy; each output's advantage is its reward normalised within its group,
``A_i = (r_i - mean(r)) / std(r)``, and the PPO clipped surrogate (Schulman et al., 2017) is
maximised with that advantage on every token of the output. No value network.

As LREM uses it (Liu et al., "Large Reasoning Embedding Models", arXiv 2510.14321): the output
is the chain of thought written before ``<emb>``; no KL term and no reference model.

Two choices the papers leave open, made here and stated:
- std is the population std of the group (``unbiased=False``), so a group of two with rewards
  (0, 1) gets advantages (-1, +1). A group whose rewards are all equal carries no signal
  (every advantage is 0 and the std is 0): it is dropped, not divided by an epsilon.
- The loss averages over all kept tokens of the batch ("token-level", as DAPO, Yu et al. 2025,
  argue), not per sequence first, so a long CoT is not down-weighted per token.
"""
from __future__ import annotations

import torch


def group_advantages(rewards: torch.Tensor, eps: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """rewards [Q, G] -> (advantages [Q, G], keep [Q] bool).

    Groups whose rewards vary by less than ``eps`` (std) are not kept; their advantages are 0.
    """
    if rewards.dim() != 2 or rewards.shape[1] < 2:
        raise ValueError(f"expected rewards [Q, G>=2], got {tuple(rewards.shape)}")
    mean = rewards.mean(dim=1, keepdim=True)
    std = rewards.std(dim=1, unbiased=False, keepdim=True)
    keep = std.squeeze(1) > eps
    adv = torch.where(keep[:, None], (rewards - mean) / std.clamp(min=eps), torch.zeros_like(rewards))
    return adv, keep


def grpo_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
              clip_eps: float = 0.2) -> torch.Tensor:
    """Token-level clipped policy-gradient loss.

    Args:
        logp: [N, T] log-probabilities of the sampled tokens under the current policy (with grad).
        old_logp: [N, T] the same under the policy that sampled them (no grad).
        advantages: [N] one per sampled output (from ``group_advantages``, flattened).
        mask: [N, T] 1 on the tokens the policy chose that count (the CoT), 0 elsewhere
            (prompt, padding, forced closing tokens, outputs of dropped groups).
        clip_eps: the PPO clip range: the ratio is clipped to [1 - eps, 1 + eps].
    Returns:
        scalar: minus the mean clipped surrogate over the masked tokens (0 when none are).
    """
    if logp.shape != old_logp.shape or logp.shape != mask.shape or advantages.shape != logp.shape[:1]:
        raise ValueError(f"shapes disagree: logp {tuple(logp.shape)}, old_logp {tuple(old_logp.shape)}, "
                         f"mask {tuple(mask.shape)}, advantages {tuple(advantages.shape)}")
    mask = mask.to(logp.dtype)
    ratio = torch.exp(logp - old_logp.detach())
    adv = advantages.detach()[:, None]
    surrogate = torch.minimum(ratio * adv, ratio.clamp(1 - clip_eps, 1 + clip_eps) * adv)
    return -(surrogate * mask).sum() / mask.sum().clamp(min=1)


def clip_fraction(logp: torch.Tensor, old_logp: torch.Tensor, mask: torch.Tensor, clip_eps: float = 0.2) -> float:
    """Share of masked tokens whose ratio left [1 - eps, 1 + eps] (a logged diagnostic)."""
    ratio = torch.exp(logp.detach() - old_logp.detach())
    out = ((ratio < 1 - clip_eps) | (ratio > 1 + clip_eps)).to(logp.dtype) * mask
    return float(out.sum() / mask.sum().clamp(min=1))
