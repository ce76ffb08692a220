"""The two training jobs: ``train-dense`` (bi-encoders) and ``train-reranker`` (cross-encoder and
LLM rerankers). They share ``TrainConfig`` and the runtime; the objective registry says which
model kinds each trains and its default objective (``TRAIN_COMMANDS``)."""
from __future__ import annotations

from ..errors import ConfigError
from ..job import Job
from . import run_train
from .config import TrainConfig
from .objectives.registry import TRAIN_COMMANDS, command_for, command_objectives


def _job(name: str, short: str, what: str) -> Job:
    kinds, default = TRAIN_COMMANDS[name]

    def check(cfg: TrainConfig) -> None:
        if cfg.kind not in kinds:
            raise ConfigError(f"objective {cfg.objective!r} trains a {cfg.kind} model; use {command_for(cfg.kind)}")

    def objectives() -> str:
        # Only for --help: finding the registered names imports the objective modules (torch).
        return (f"Objectives: {', '.join(command_objectives()[name])} (objective=..., default {default}), or "
                f"one registered by a module in objective_modules=[...].")

    return Job(
        name=name, config=TrainConfig, run=run_train, help=short,
        description=f"{what} on mined training examples (examples=<file from `rayrag mine`>); checkpoints, "
                    f"resume, MLflow run and an exported model folder.",
        details=objectives, flags=("model", "dataset", "data_dir", "output_dir"), defaults={"objective": default},
        check=check)


DENSE_JOB = _job("train-dense", "train a dense embedder with Ray Train + DeepSpeed",
                 "Fine-tune a bi-encoder (encoder-only or decoder LLM embedder)")
RERANKER_JOB = _job("train-reranker", "train a cross-encoder or LLM reranker with Ray Train + DeepSpeed",
                    "Train a reranker (cross-encoder from an encoder's weights, or an LLM scoring yes/no)")
