"""The objective registry: one entry per objective, read by config validation, the CLI and the driver.

An objective module registers its entries when it is imported::

    register(ObjectiveSpec("infonce", kind="dense", loss=..., objective=DenseObjective))

The built-in modules are imported on the first lookup, so every lookup sees them. Any other
module is named in the train config's ``objective_modules``: config validation imports it (so
its names validate) and the train job ships its top-level package to the Ray workers.

This module imports nothing heavy: the CLI and config validation read it before any model code.
"""
from __future__ import annotations

import importlib
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Callable, Iterable

from ...errors import ConfigError

# CLI command -> (the model kinds it trains, its default objective). An objective's kind says
# which command trains it; a new model kind is one line here plus its Objective class.
TRAIN_COMMANDS: dict[str, tuple[tuple[str, ...], str]] = {
    "train-dense": (("dense",), "infonce"),
    "train-reranker": (("cross", "llm"), "lce"),
    "train-sparse": (("sparse",), "disco"),
    "train-reasoning": (("reasoning",), "lrem-sft"),
}
BUILTIN_MODULES = ("rayrag.train.objectives.dense", "rayrag.train.objectives.cross",
                   "rayrag.train.objectives.llm", "rayrag.train.objectives.sparse",
                   "rayrag.train.objectives.reasoning")


@dataclass(frozen=True)
class ObjectiveSpec:
    """One objective: what config validation, the CLI and the driver need to know about it.

    ``loss`` is called by ``objective`` (an ``Objective`` subclass) with the arguments its model
    kind defines: see ``DenseObjective.loss``, ``CrossEncoderObjective.loss``,
    ``LLMRerankerObjective.loss`` and ``SparseQueryObjective.loss``. The math itself lives in ``rayrag.losses`` (or the plug-in's
    own loss module).
    """
    name: str
    kind: str  # model kind it trains: dense | cross | llm | sparse | reasoning (TRAIN_COMMANDS)
    loss: Callable
    objective: type  # Objective subclass: build, collate, loss, save, evaluate
    needs_teacher_scores: bool = False  # examples must carry teacher scores (mine with teacher=..., or DiSCo's)
    min_group_size: int = 1  # documents per query: 1 positive + (group_size - 1) negatives
    max_group_size: int | None = None
    summary: str = ""  # one line for --help

    def __post_init__(self):
        kinds = sorted(k for ks, _ in TRAIN_COMMANDS.values() for k in ks)
        if self.kind not in kinds:
            raise ValueError(f"objective {self.name!r}: kind must be one of {kinds}, got {self.kind!r}")
        if self.min_group_size < 1 or (self.max_group_size is not None and self.max_group_size < self.min_group_size):
            raise ValueError(f"objective {self.name!r}: need 1 <= min_group_size <= max_group_size")


_REGISTRY: dict[str, ObjectiveSpec] = {}
_builtins_loaded = False


def register(spec: ObjectiveSpec) -> ObjectiveSpec:
    """Add ``spec``; a name already taken by a different objective is an error (no silent override)."""
    old = _REGISTRY.get(spec.name)
    if old is not None and old != spec:
        raise ValueError(f"objective {spec.name!r} is already registered by {old.objective.__module__}")
    _REGISTRY[spec.name] = spec
    return spec


def _load_builtins() -> None:
    global _builtins_loaded
    if not _builtins_loaded:
        for name in BUILTIN_MODULES:
            importlib.import_module(name)
        _builtins_loaded = True


def get_objective(name: str) -> ObjectiveSpec:
    _load_builtins()
    if name not in _REGISTRY:
        raise ConfigError(f"objective must be one of {objective_names()}, got {name!r} (an objective from "
                          f"another module is registered by naming the module in objective_modules)")
    return _REGISTRY[name]


def objective_names(kinds: Iterable[str] | None = None) -> list[str]:
    _load_builtins()
    kinds = None if kinds is None else set(kinds)
    return sorted(n for n, s in _REGISTRY.items() if kinds is None or s.kind in kinds)


def command_objectives() -> dict[str, list[str]]:
    """CLI command -> the registered objectives it trains (the CLI's help reads this)."""
    return {cmd: objective_names(kinds) for cmd, (kinds, _) in TRAIN_COMMANDS.items()}


def command_for(kind: str) -> str:
    return next(cmd for cmd, (kinds, _) in TRAIN_COMMANDS.items() if kind in kinds)


def import_objective_modules(names: Iterable[str]) -> None:
    """Import the modules that register objectives beyond the built-in ones."""
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise ConfigError(f"objective_modules: cannot import {name!r}: {e}") from None


def modules_to_ship(names: Iterable[str]) -> list[ModuleType]:
    """The top-level packages (or single-file modules) of ``names`` that Ray workers cannot be
    assumed to have: everything but rayrag itself and packages installed in site-packages, which
    every node's image holds as it holds rayrag. Ray's ``py_modules`` uploads them with the run."""
    installed = {Path(sysconfig.get_paths()[k]).resolve() for k in ("purelib", "platlib")}
    out: dict[str, ModuleType] = {}
    for name in names:
        top = name.partition(".")[0]
        if top == "rayrag" or top in out:
            continue
        importlib.import_module(name)
        module = sys.modules[top]
        where = Path(getattr(module, "__file__", None) or next(iter(module.__path__))).resolve()
        if not any(where.is_relative_to(p) for p in installed):
            out[top] = module
    return list(out.values())
