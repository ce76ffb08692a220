"""A toy objective written the way a user adds one: a package holding its loss module and its
objective module, which registers itself. Tests write it into a temp folder, outside rayrag."""
from __future__ import annotations

import sys
import textwrap
from pathlib import Path

LOSS = '''
"""Pairwise hinge loss (RankSVM: Herbrich, Graepel & Obermayer, "Large Margin Rank Boundaries
for Ordinal Regression", 2000): each negative should score ``margin`` below its positive."""
import torch


def pairwise_hinge(scores: torch.Tensor, margin: float) -> torch.Tensor:
    """scores: [Q, g] with each row's positive at column 0 -> scalar mean hinge over negatives."""
    return torch.relu(margin - (scores[:, :1] - scores[:, 1:])).mean()  # [Q, g-1] -> scalar
'''

OBJECTIVE = '''
"""Dense bi-encoder trained with the pairwise hinge: the built-in DenseObjective, another loss."""
import json
import os

from rayrag.train.objectives.dense import DenseObjective, group_scores
from rayrag.train.objectives.registry import ObjectiveSpec, register

from .hinge import pairwise_hinge

MARKER_DIR = {marker!r}  # every process that computes the loss leaves its pid and this file's path


def _loss(q, d, teacher, cfg):
    if MARKER_DIR:
        with open(os.path.join(MARKER_DIR, f"{{os.getpid()}}.json"), "w") as f:
            json.dump({{"pid": os.getpid(), "file": __file__}}, f)
    return pairwise_hinge(group_scores(q, d, cfg.group_size), margin=0.5)


register(ObjectiveSpec({name!r}, "dense", _loss, DenseObjective, min_group_size=2,
                       summary="toy: pairwise hinge on cosine scores"))
'''


def write_toy_package(root: Path, package: str, name: str, marker_dir: Path | None = None) -> str:
    """Write ``root/package`` (``hinge.py`` + ``objective.py``); return the module to import."""
    folder = root / package
    folder.mkdir(parents=True)
    (folder / "__init__.py").write_text("")
    (folder / "hinge.py").write_text(textwrap.dedent(LOSS))
    (folder / "objective.py").write_text(OBJECTIVE.format(name=name, marker=str(marker_dir or "")))
    return f"{package}.objective"


def forget_toy(package: str, name: str) -> None:
    """Undo the import and the registration, so other tests see only the built-ins."""
    from rayrag.train.objectives import registry

    registry._REGISTRY.pop(name, None)
    for mod in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
        del sys.modules[mod]
