"""LREM's reward for a sampled chain of thought.

Liu et al., "Large Reasoning Embedding Models" (arXiv 2510.14321), RL stage:
``r = 0.5 * r_format + 0.2 * r_length + 1.0 * r_acc`` with
- r_format: 1 when the output has the expected shape (``<think> kw, kw, ... </think><emb>``),
- r_length: 1 when the CoT has at most ``max_len`` tokens (16 in the paper),
- r_acc = 1 - log(rank) / log(N): rank (1-based) of the query's positive item among its N
  candidate items under the embedding that follows the CoT; 1 at rank 1, 0 at rank N.
Parsing the text into a CoT and its validity is the model's job (``models/reasoning.py``);
this module only turns the parsed facts into numbers.
"""
from __future__ import annotations

import math

import torch

WEIGHTS = {"format": 0.5, "length": 0.2, "acc": 1.0}


def rank_reward(rank: torch.Tensor, n: int) -> torch.Tensor:
    """rank [...] (1-based, among n candidates) -> 1 - log(rank) / log(n)."""
    if n < 2:
        raise ValueError(f"the rank reward needs at least 2 candidates, got {n}")
    rank = rank.to(torch.float64)
    if bool(((rank < 1) | (rank > n)).any()):
        raise ValueError(f"ranks must lie in [1, {n}], got {rank.min().item()}..{rank.max().item()}")
    return (1.0 - torch.log(rank) / math.log(n)).to(torch.float32)


def lrem_reward(format_ok: torch.Tensor, cot_len: torch.Tensor, rank: torch.Tensor, n: int, max_len: int = 16,
                weights: dict[str, float] | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per sample: format_ok [S] bool, cot_len [S] tokens, rank [S] -> (total [S], parts).

    ``parts`` holds the unweighted r_format, r_length and r_acc, for logging each."""
    w = {**WEIGHTS, **(weights or {})}
    if set(w) != set(WEIGHTS):
        raise ValueError(f"reward weights are {sorted(WEIGHTS)}, got {sorted(w)}")
    parts = {"format": format_ok.to(torch.float32), "length": (cot_len <= max_len).to(torch.float32),
             "acc": rank_reward(rank, n)}
    total = sum(w[k] * parts[k] for k in WEIGHTS)
    return total, parts
