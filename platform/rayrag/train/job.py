"""The training jobs: ``train-dense`` (bi-encoders), ``train-reranker`` (cross-encoder and LLM
rerankers), ``train-sparse`` (SPLADE query encoders: DiSCo) and ``train-reasoning`` (LREM). They share ``TrainConfig`` and the runtime; the objective registry says which
model kinds each trains and its default objective (``TRAIN_COMMANDS``)."""
from __future__ import annotations

from ..errors import ConfigError
from ..job import Job
from . import run_train
from .config import TrainConfig
from .objectives.registry import TRAIN_COMMANDS, command_for, command_objectives


def _job(name: str, short: str, what: str, examples: str = "mined training examples (examples=<file from "
         "`rayrag mine`>)", defaults: dict | None = None) -> Job:
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
        description=f"{what} on {examples}; checkpoints, resume, MLflow run and an exported model folder.",
        details=objectives, flags=("model", "dataset", "data_dir", "output_dir"), defaults={"objective": default, **(defaults or {})},
        check=check)


DENSE_JOB = _job("train-dense", "train a dense embedder with Ray Train + DeepSpeed",
                 "Fine-tune a bi-encoder (encoder-only or decoder LLM embedder)")
RERANKER_JOB = _job("train-reranker", "train a cross-encoder or LLM reranker with Ray Train + DeepSpeed",
                    "Train a reranker (cross-encoder from an encoder's weights, or an LLM scoring yes/no)")
# DiSCo examples carry their candidates' texts and hold out conversations (disco.eval_examples),
# not a BEIR split: no dataset folder is read, and holdout is off.
SPARSE_JOB = _job("train-sparse", "train a SPLADE query encoder (DiSCo) with Ray Train + DeepSpeed",
                  "Distil conversational query rewrites into a SPLADE query encoder over the whole "
                  "conversation (the document encoder stays frozen, so its index stays valid)",
                  examples="DiSCo examples (examples=<JSONL of turns, candidates and teacher scores>)",
                  defaults={"holdout": None, "dataset": "mtrag", "model": "splade-tiny",
                            "output_dir": "out/train/disco"})
REASONING_JOB = _job("train-reasoning", "train a reasoning embedder (LREM) with Ray Train + DeepSpeed",
                     "Train a causal LM to write a keyword chain of thought and embed after it (LREM: "
                     "lrem-sft is stage 1, lrem-grpo the RL stage, lrem-direct the no-reasoning baseline)",
                     examples="mined examples with a `cot` per query (examples=<file from `rayrag cot`>)",
                     defaults={"model": "smollm2-135m", "output_dir": "out/train/lrem"})
