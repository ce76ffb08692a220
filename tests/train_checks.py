"""Shared pieces of the training tests: a tiny run's config, and the check that a Ray Train +
DeepSpeed run trained exactly like the plain PyTorch reference (``rayrag.train.reference``)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from rayrag.config import load_config
from rayrag.train.config import TrainConfig


def train_config(tmp_path, model, examples, data_dir, *overrides) -> TrainConfig:
    return load_config(TrainConfig, None, [
        f"model={model}", f"examples={examples}", f"output_dir={tmp_path / 'out'}",
        *([f"data_dir={data_dir}"] if data_dir else []),
        "eval.split=null", "query_max_length=16", "doc_max_length=32", "cpus_per_worker=1", "log_every=1",
        *overrides])


def loss_history(cfg: TrainConfig) -> list[float]:
    """The run's loss per optimizer step (mean over workers), as the loop wrote it."""
    return json.loads((Path(cfg.output_dir) / "loss_history.json").read_text())["losses"]


def assert_trained_like(result: dict, cfg: TrainConfig, reference, initial: Path, *, rtol: float = 1e-4,
                        atol: float = 1e-5, weight_atol: float = 2e-5,
                        outlier_atol: float | None = None) -> dict[str, float]:
    """The run's per-step losses and exported weights equal ``reference``'s (a ``ReferenceRun``),
    and training moved the weights away from ``initial``'s (else two untrained models would
    agree). Returns the measured gaps, printed for the record.

    ``outlier_atol``: at most 0.1% of each tensor's elements may be off by more than
    ``weight_atol``, none by more than this. Adam divides each gradient by its own running norm,
    so an element whose gradient is near Adam's eps turns a float-order difference in the
    workers' gradient reduction into a visible weight difference (ZeRO-3's reduce-scatter)."""
    from safetensors.torch import load_file

    losses = loss_history(cfg)
    assert len(losses) == len(reference.losses)
    np.testing.assert_allclose(losses, reference.losses, rtol=rtol, atol=atol)
    trained = load_file(str(Path(result["model_dir"]) / "model.safetensors"))
    ref = getattr(reference.module, "backbone", reference.module).state_dict()  # bi-encoders export the backbone
    assert set(trained) <= set(ref)
    for name, value in trained.items():
        got, want = value.float().numpy(), ref[name].float().numpy()
        np.testing.assert_allclose(got, want, atol=outlier_atol or weight_atol, err_msg=name)
        if outlier_atol:
            outliers = int((np.abs(got - want) > weight_atol).sum())
            assert outliers <= max(1, got.size // 1000), (name, outliers, got.size)
    start = load_file(str(initial / "model.safetensors"))
    moved = max(float((trained[n] - start[n]).abs().max()) for n in trained if n in start)
    assert moved > 1e-3  # the comparison is not between two untrained models
    gaps = {"max_loss_diff": float(np.max(np.abs(np.subtract(losses, reference.losses)))),
            "max_weight_diff": weight_gap(result, reference),
            "max_weight_moved": moved}
    print(f"[{cfg.objective}] losses {losses} reference {reference.losses} " + json.dumps(gaps))
    return gaps


def weight_gap(result: dict, reference) -> float:
    """The largest |difference| between the run's exported weights and ``reference``'s."""
    from safetensors.torch import load_file

    trained = load_file(str(Path(result["model_dir"]) / "model.safetensors"))
    ref = getattr(reference.module, "backbone", reference.module).state_dict()  # bi-encoders export the backbone
    return max(float((trained[n].float() - ref[n].float()).abs().max()) for n in trained)
