"""What an objective provides to the shared training loop.

A new objective (LREM, DiSCo, ...) is a loss in ``rayrag.losses`` plus a registry entry
(``registry.ObjectiveSpec``) naming one of these: how to build the trainable module, turn
example groups into tensors, compute the loss through the engine, export a loadable folder,
and evaluate. An objective of an existing model kind reuses its class with another loss. The
loop, engine, checkpoints, fault tolerance and tracking stay the same.
"""
from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ...io import atomic_dir
from ...models.pair_scoring import PairScorer
from ..config import TrainConfig
from ..examples import Group, make_group


class Objective(ABC):
    def __init__(self, cfg: TrainConfig):
        from .registry import get_objective

        self.cfg = cfg
        self.spec = get_objective(cfg.objective)  # its loss is what ``loss`` calls
        self.tokenizer = None
        self.eval_data = None  # BeirDataset of cfg.eval.split (or the kind's own), set by the loop
        # Optimizer steps done before the current micro-batch; the loop sets it, so a schedule
        # inside a loss (DiSCo's regulariser warm-up) continues where a resumed run stopped.
        self.step = 0
        self.epoch = 0  # and the micro-batch's place in its epoch (seeds sampling objectives)
        self.micro = 0
        self.metrics: dict[str, float] = {}  # the last micro-batch's diagnostics; the loop logs their mean

    def epoch_artifacts(self) -> dict[str, str]:
        """Text artifacts for the epoch just ended (file name -> text); rank 0 logs them to MLflow."""
        return {}

    def attach(self, data: dict) -> None:
        """Worker side: take what ``prepare_data`` shipped beyond examples and texts."""
        self.eval_data = data.get("eval")

    @classmethod
    def prepare_data(cls, cfg: TrainConfig) -> dict:
        """Driver side, before any worker starts: load and check the examples and evaluation data.

        Returns ``{"examples": [...], "text": {doc id: text}, "eval": ..., "held_out_examples": n}``,
        shipped to every worker. Default: the mine job's examples over a BEIR corpus; a kind with
        examples of its own format (DiSCo's) overrides it, with ``group``.
        """
        from ..run import prepare_mined_data

        return prepare_mined_data(cfg)

    def group(self, example, index: int, epoch: int, text: dict[str, str]):
        """One example's share of a micro-batch in ``epoch`` (seeded: the same on every rank)."""
        cfg = self.cfg
        return make_group(example, index, epoch, cfg.seed, cfg.group_size, cfg.negatives_from_top, text)

    @property
    def evaluates(self) -> bool:
        """Whether the loop evaluates at epoch ends (and before training when asked)."""
        return bool(self.cfg.eval.split)

    @abstractmethod
    def build(self, model_path: str) -> torch.nn.Module:
        """The trainable module (sets ``self.tokenizer``)."""

    @abstractmethod
    def collate(self, groups: Sequence[Group]) -> dict[str, torch.Tensor]: ...

    @abstractmethod
    def loss(self, engine, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Forward once through ``engine`` (DeepSpeed wraps the module) and return the loss."""

    @abstractmethod
    def save(self, module: torch.nn.Module, folder: Path) -> None:
        """Write a standard model folder (HF / sentence-transformers layout) into ``folder``."""

    @abstractmethod
    def evaluate(self, module: torch.nn.Module, device: torch.device) -> dict[str, float]: ...

    def export(self, module: torch.nn.Module, dest: str | Path) -> Path:
        """``save`` into a temp folder, then rename: a crash never leaves a half-written model."""
        dest = Path(dest)
        with atomic_dir(dest, replace=True) as tmp:
            self.save(module, tmp)
        return dest


@contextlib.contextmanager
def eval_mode(module: torch.nn.Module):
    """Evaluate mid-training: dropout off inside, the module's previous mode restored after."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


class RerankerObjective(Objective):
    """Rerankers evaluate alike: re-score the first stage's top documents with the scorer the
    exported model will be served with (``rayrag.models.pair_scoring``)."""

    eval_batch_size = 32

    @abstractmethod
    def pair_scorer(self, module: torch.nn.Module, device: torch.device) -> PairScorer:
        """This kind's shared scorer around the module being trained, at ``cfg.max_length``."""

    @torch.no_grad()
    def evaluate(self, module: torch.nn.Module, device: torch.device) -> dict[str, float]:
        from .evaluation import rerank_eval

        pairs = self.pair_scorer(module, device)

        def scorer(query: str, docs) -> np.ndarray:
            docs = list(docs)
            return pairs([query] * len(docs), docs)

        with eval_mode(module):
            return rerank_eval(self.cfg, self.eval_data, scorer)


def unwrap_peft(module: torch.nn.Module) -> torch.nn.Module:
    """LoRA adapters merged into a copy of the weights, so the export is a plain model."""
    try:
        from peft import PeftModel
    except ImportError:  # peft not installed: nothing can be wrapped
        return module
    if isinstance(module, PeftModel):
        import copy

        return copy.deepcopy(module).merge_and_unload()
    return module


def apply_lora(model: torch.nn.Module, cfg: TrainConfig, task_type: str) -> torch.nn.Module:
    if not cfg.lora.enabled:
        return model
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                      target_modules=list(cfg.lora.target_modules), task_type=task_type)
    return get_peft_model(model, lora)


def enable_checkpointing(model: torch.nn.Module, cfg: TrainConfig) -> None:
    if cfg.gradient_checkpointing:
        # Non-reentrant: works with frozen embeddings (LoRA) without enable_input_require_grads.
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
