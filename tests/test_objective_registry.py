"""The objective registry: what config validation, the CLI and the driver read. No Ray needed."""
from __future__ import annotations

import pytest
import torch

from rayrag.cli import build_parser, main
from rayrag.config import load_config
from rayrag.errors import ConfigError
from rayrag.losses import infonce, localized_contrastive, yes_no_sft
from rayrag.train.config import TrainConfig
from rayrag.train.objectives import get_objective, make_objective, objective_names
from rayrag.train.objectives.cross import CrossEncoderObjective
from rayrag.train.objectives.dense import DenseObjective
from rayrag.train.objectives.llm import LLMRerankerObjective
from rayrag.train.objectives.reasoning import DirectObjective, GrpoObjective, SftObjective
from rayrag.train.objectives.sparse import SparseQueryObjective
from rayrag.train.objectives.registry import ObjectiveSpec, command_objectives, modules_to_ship, register

from .toy_objective import forget_toy, write_toy_package


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """A toy dense objective in a package outside rayrag, importable by this process only."""
    module = write_toy_package(tmp_path, "rayrag_toy_registry", "toy_hinge_registry")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield module
    forget_toy("rayrag_toy_registry", "toy_hinge_registry")


def test_builtin_entries():
    assert objective_names() == ["disco", "infonce", "kl", "lce", "llm_yesno", "lrem-direct", "lrem-grpo", "lrem-sft",
                                 "margin_mse"]
    rows = {n: (s.kind, s.objective, s.needs_teacher_scores, s.min_group_size, s.max_group_size)
            for n in objective_names() for s in [get_objective(n)]}
    assert rows == {"infonce": ("dense", DenseObjective, False, 1, None),
                    "kl": ("dense", DenseObjective, True, 2, None),
                    "margin_mse": ("dense", DenseObjective, True, 2, 2),
                    "lce": ("cross", CrossEncoderObjective, False, 2, None),
                    "llm_yesno": ("llm", LLMRerankerObjective, False, 2, None),
                    "disco": ("sparse", SparseQueryObjective, True, 1, None),
                    "lrem-direct": ("reasoning", DirectObjective, False, 1, None),
                    "lrem-sft": ("reasoning", SftObjective, False, 1, None),
                    "lrem-grpo": ("reasoning", GrpoObjective, False, 1, None)}
    assert get_objective("lce").loss is localized_contrastive and get_objective("llm_yesno").loss is yes_no_sft
    assert command_objectives() == {"train-dense": ["infonce", "kl", "margin_mse"],
                                    "train-reranker": ["lce", "llm_yesno"], "train-sparse": ["disco"],
                                    "train-reasoning": ["lrem-direct", "lrem-grpo", "lrem-sft"]}


def test_dense_entry_loss_is_the_papers_loss():
    torch.manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(3, 8), dim=-1)
    d = torch.nn.functional.normalize(torch.randn(6, 8), dim=-1)
    cfg = load_config(TrainConfig, None, ["group_size=2", "temperature=0.1"])
    assert get_objective("infonce").loss(q, d, None, cfg).item() == pytest.approx(infonce(q, d, 0.1, 2).item())


def test_unknown_objective_is_an_error_not_a_reranker():
    with pytest.raises(ConfigError, match="objective must be one of .*got 'contrastive'"):
        make_objective(TrainConfig(objective="contrastive"))  # built without validation
    with pytest.raises(ConfigError, match="objective must be one of"):
        load_config(TrainConfig, None, ["objective=contrastive"])


def test_a_name_cannot_be_taken_twice_or_given_an_unknown_kind():
    with pytest.raises(ValueError, match="already registered"):
        register(ObjectiveSpec("infonce", "dense", lambda *a: 0, DenseObjective))
    with pytest.raises(ValueError, match="kind must be one of"):
        ObjectiveSpec("colbert_toy", "late_interaction", lambda *a: 0, DenseObjective)


def test_group_size_rules_come_from_the_entry():
    with pytest.raises(ConfigError, match="set group_size=2"):
        load_config(TrainConfig, None, ["objective=margin_mse", "group_size=4"])
    with pytest.raises(ConfigError, match=r"group_size must be >= 2 for objective 'kl'"):
        load_config(TrainConfig, None, ["objective=kl", "group_size=1"])
    with pytest.raises(ConfigError, match=r"group_size must be >= 1 for objective 'infonce', got 0"):
        load_config(TrainConfig, None, ["group_size=0"])
    assert load_config(TrainConfig, None, ["group_size=1"]).kind == "dense"


def test_a_registered_module_is_read_by_config_cli_and_driver(toy):
    cfg = load_config(TrainConfig, None, [f"objective_modules=[{toy}]", "objective=toy_hinge_registry",
                                          "group_size=3"])
    assert cfg.kind == "dense" and isinstance(make_objective(cfg), DenseObjective)
    assert "toy_hinge_registry" in command_objectives()["train-dense"]
    with pytest.raises(ConfigError, match=r"group_size must be >= 2 for objective 'toy_hinge_registry'"):
        load_config(TrainConfig, None, [f"objective_modules=[{toy}]", "objective=toy_hinge_registry", "group_size=1"])
    assert [m.__name__ for m in modules_to_ship([toy, "rayrag.train.objectives.dense"])] == ["rayrag_toy_registry"]
    # the CLI routes it by its kind, and lists it once imported
    assert main(["train-reranker", f"objective_modules=[{toy}]", "objective=toy_hinge_registry"]) == 2
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices["train-dense"]
    assert "toy_hinge_registry" in sub.format_help()


def test_an_objective_module_that_does_not_import_is_a_config_error():
    with pytest.raises(ConfigError, match="objective_modules: cannot import 'no_such_objectives'"):
        load_config(TrainConfig, None, ["objective_modules=[no_such_objectives]"])
