"""Training on Ray Train (V2) + DeepSpeed: one loop and engine, objectives as plug-ins."""
from .config import TrainConfig
from .objectives.registry import ObjectiveSpec, get_objective, objective_names, register

__all__ = ["TrainConfig", "ObjectiveSpec", "get_objective", "objective_names", "register", "run_train"]


def run_train(cfg: TrainConfig) -> dict:
    from .run import run_train as _run

    return _run(cfg)
