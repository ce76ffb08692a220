"""Objective name -> the class that builds, batches, scores and exports for it."""
from __future__ import annotations

from ..config import TrainConfig
from .base import Objective


def make_objective(cfg: TrainConfig) -> Objective:
    if cfg.kind == "dense":
        from .dense import DenseObjective

        return DenseObjective(cfg)
    if cfg.kind == "cross":
        from .cross import CrossEncoderObjective

        return CrossEncoderObjective(cfg)
    from .llm import LLMRerankerObjective

    return LLMRerankerObjective(cfg)


__all__ = ["Objective", "make_objective"]
