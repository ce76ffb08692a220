"""Training on Ray Train (V2) + DeepSpeed: one loop and engine, objectives as plug-ins."""
from .config import OBJECTIVES, TrainConfig

__all__ = ["TrainConfig", "OBJECTIVES", "run_train"]


def run_train(cfg: TrainConfig) -> dict:
    from .run import run_train as _run

    return _run(cfg)
