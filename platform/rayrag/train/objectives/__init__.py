"""Objectives: each module registers its entries in ``registry`` (name -> model kind, loss,
Objective class, teacher scores, group size); the loop builds the one a config names."""
from __future__ import annotations

from typing import TYPE_CHECKING

from .registry import ObjectiveSpec, get_objective, objective_names, register

if TYPE_CHECKING:
    from ..config import TrainConfig
    from .base import Objective


def make_objective(cfg: TrainConfig) -> Objective:
    """The registered class for ``cfg.objective``; an unknown name is a ConfigError."""
    return get_objective(cfg.objective).objective(cfg)


__all__ = ["ObjectiveSpec", "get_objective", "make_objective", "objective_names", "register"]
