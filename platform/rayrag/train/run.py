"""The train job's driver: check everything, start Ray Train, record the result in MLflow.

Data, model and config are validated in the driver before any worker starts. The examples
and the texts they need go into the object store once, so workers on other nodes need no
access to the data folder. Ray Train's run lives in ``storage_path`` under a name derived from
the output folder: starting the same job again after a crash resumes from its last
checkpoint (Ray Train V2 restores a run with the same name and storage).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from ..config import to_dict
from ..errors import ConfigError, DataError
from .config import TrainConfig
from .examples import BatchPlan, check_plan, drop_held_out, load_examples


def prepare_data(cfg: TrainConfig) -> dict:
    """The examples and evaluation data of ``cfg``'s objective (``Objective.prepare_data``)."""
    return cfg.spec.objective.prepare_data(cfg)


def prepare_mined_data(cfg: TrainConfig) -> dict:
    """The mine job's examples over a BEIR dataset's corpus (dense and reranker objectives)."""
    from ..data import dataset_dir, load_beir
    from ..data.beir import load_corpus
    from ..data.splits import split_query_ids

    folder = dataset_dir(cfg.dataset, cfg.data_dir)
    evaluation = None
    if cfg.eval.split:
        # Shipped with the examples: workers (cwd in Ray's session folder, maybe on another node)
        # need no data folder of their own, and a missing split fails here, before training.
        evaluation = load_beir(folder, cfg.eval.split)
    corpus = evaluation.corpus if evaluation else load_corpus(folder / "corpus.jsonl")
    examples = load_examples(cfg.examples, set(corpus), need_negatives=cfg.group_size > 1,
                             need_teacher=cfg.spec.needs_teacher_scores)
    held_out = 0
    if cfg.holdout:
        # Mining `train` already leaves dev out; this also covers files mined from train_all or
        # elsewhere, so an example of a dev query is never trained on.
        try:
            held = split_query_ids(folder, cfg.holdout)
        except DataError as e:
            raise DataError(f"holdout={cfg.holdout}: {e}; set holdout=null to train on every example") from None
        examples, held_out = drop_held_out(examples, held, cfg.examples, cfg.holdout)
        print(f"[train] dropped {held_out} examples of {cfg.holdout} queries from {cfg.examples}; "
              f"{len(examples)} left", flush=True)
    needed = {d for ex in examples for d in (*ex.positives, *ex.negatives[:cfg.negatives_from_top])}
    check_plan(BatchPlan(len(examples), cfg.batch_size, cfg.num_workers, cfg.grad_accum))
    return {"examples": examples, "text": {d: corpus[d].full_text for d in needed}, "eval": evaluation,
            "held_out_examples": held_out}


# Settings a rerun may change and still resume the run in its output_dir: where and how it runs,
# how it reports, and how long it trains (a longer max_steps / epochs extends the run).
RESUMABLE = {"cpus_per_worker", "use_gpu", "max_failures", "log_every", "keep_checkpoints",
             "checkpoint_every", "register_as", "experiment", "eval", "max_steps", "epochs"}


def _claim_output(out: Path, storage: Path, cfg: TrainConfig) -> None:
    """Ray Train resumes whatever run ``storage`` holds, so a rerun with, say, another learning
    rate would silently continue the old run: refuse that, naming the settings that differ."""
    from ..io import atomic_write_json

    path = out / "train_config.json"
    ours = {k: v for k, v in to_dict(cfg).items() if k not in RESUMABLE}
    if path.is_file() and (storage / "train").is_dir():
        theirs = {k: v for k, v in json.loads(path.read_text()).items() if k not in RESUMABLE}
        differ = sorted(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k))
        if differ:
            raise ConfigError(f"{out} holds a run trained with other {', '.join(differ)}; running again resumes "
                              f"that run, so delete the folder or choose another output_dir to start anew")
    atomic_write_json(path, to_dict(cfg), sort_keys=False)


def _for_workers(cfg: TrainConfig) -> dict:
    """The config as workers get it: a model given as a relative folder (a stage-1 output, say)
    made absolute, since workers run in Ray's session folder, not the driver's."""
    shipped = to_dict(cfg)
    if Path(cfg.model).is_dir():
        shipped["model"] = str(Path(cfg.model).resolve())
    return shipped


def run_train(cfg: TrainConfig) -> dict:
    import ray
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from .. import tracking
    from ..assets import resolve_model
    from ..io import atomic_write_json
    from ..ray_utils import init_ray
    from .loop import train_loop_per_worker

    resolve_model(cfg.model)  # a bad model name fails here, not in every worker
    data = prepare_data(cfg)
    out = Path(cfg.output_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    storage = Path(cfg.storage_path).resolve() if cfg.storage_path else out / "ray"
    _claim_output(out, storage, cfg)
    started = init_ray(dashboard=True)
    try:
        _check_resources(cfg, ray.cluster_resources())
        with tracking.job_run(f"train-{cfg.objective}", to_dict(cfg), dataset=cfg.dataset, experiment=cfg.experiment,
                              tags={"rayrag.objective": cfg.objective, "rayrag.model": cfg.model}) as jr:
            t0 = time.perf_counter()
            resources = {"CPU": cfg.cpus_per_worker, **({"GPU": 1} if cfg.use_gpu else {})}
            trainer = TorchTrainer(
                train_loop_per_worker,
                train_loop_config={"train": _for_workers(cfg), "data": ray.put(data), "model_dir": str(out / "model"),
                                   "mlflow": {"uri": tracking.tracking_uri(), "run_id": jr.run_id}},
                scaling_config=ScalingConfig(num_workers=cfg.num_workers, use_gpu=cfg.use_gpu,
                                             resources_per_worker=resources),
                run_config=RunConfig(name="train", storage_path=str(storage),
                                     failure_config=FailureConfig(max_failures=cfg.max_failures),
                                     checkpoint_config=CheckpointConfig(num_to_keep=cfg.keep_checkpoints),
                                     worker_runtime_env=_worker_runtime_env(cfg)),
            )
            result = trainer.fit()
            wall = time.perf_counter() - t0
            if result.error:
                raise result.error
            history = json.loads((out / "loss_history.json").read_text())
            metrics = {k: v for k, v in (result.metrics or {}).items() if isinstance(v, (int, float))}
            summary = {"wall_s": wall, "examples": len(data["examples"]),
                       "held_out_examples": data["held_out_examples"], "total_steps": history["total_steps"],
                       **{k: v for k, v in metrics.items() if k.startswith("eval")},
                       "resumed_from_step": metrics.get("resumed_from_step")}
            jr.log_metrics({k: v for k, v in summary.items() if isinstance(v, (int, float))})
            # history covers the whole run, from step 1, unless it resumed from a checkpoint
            # written before checkpoints carried it (then from that checkpoint's next step)
            first_step = history.get("first_step", 1)
            if first_step > 1:
                summary["curves_from_step"] = first_step
            _plot_loss(jr, history["losses"], cfg, first_step)
            summary["trends"] = _log_step_curves(jr, history.get("metrics") or {}, cfg, first_step)
            jr.log_artifact(out / "model", "model")
            version = None
            if cfg.register_as:
                version = tracking.register_folder(jr.run_id, "model", cfg.register_as,
                                                   f"rayrag {cfg.objective} model trained from {cfg.model}")
            res = {**summary, "model_dir": str(out / "model"), "checkpoint": result.checkpoint.path
                   if result.checkpoint else None, "mlflow_run_id": jr.run_id,
                   "tracking_uri": tracking.tracking_uri(), "registered_model": cfg.register_as,
                   "registered_version": version}
            atomic_write_json(out / "result.json", res, sort_keys=False)
            jr.log_artifact(out / "result.json")
            print(f"[train] done in {wall:.0f} s: {out / 'model'}  MLflow run {jr.run_id}"
                  + "".join(f"  {k}={v:.4f}" for k, v in summary.items() if k.startswith("eval")), flush=True)
            return res
    finally:
        if started:
            ray.shutdown()


def _worker_runtime_env(cfg: TrainConfig) -> dict:
    """Ship the packages of ``objective_modules`` to the workers as Ray ``py_modules``.

    Ray uploads local ``py_modules`` only for a job's own runtime_env (``ray.init``, ``ray job
    submit``); an actor's must already name uploaded packages, so they are uploaded here the way
    ``ray.init`` does it (content-addressed: an unchanged package is uploaded once). A field set
    here replaces the job's own, so the job's ``py_modules`` are kept in front.
    """
    import tempfile

    import ray
    from ray._private.runtime_env.py_modules import upload_py_modules_if_needed  # Ray pinned: constraints.txt

    from .objectives.registry import modules_to_ship

    ours = modules_to_ship(cfg.objective_modules)
    if not ours:
        return {}
    with tempfile.TemporaryDirectory(prefix="rayrag-py-modules-") as scratch:
        uris = upload_py_modules_if_needed({"py_modules": ours}, include_gitignore=True, scratch_dir=scratch)
    theirs = ray.get_runtime_context().runtime_env.get("py_modules") or []
    return {"py_modules": [*theirs, *uris["py_modules"]]}


def _check_resources(cfg: TrainConfig, have: dict) -> None:
    """Fail now rather than wait forever for workers that cannot be placed."""
    need_gpu = cfg.num_workers if cfg.use_gpu else 0
    if have.get("GPU", 0) < need_gpu:
        raise ConfigError(f"use_gpu=true needs {need_gpu} GPU(s); the cluster has {have.get('GPU', 0):g}")
    if have.get("CPU", 0) < cfg.num_workers * cfg.cpus_per_worker:
        raise ConfigError(f"{cfg.num_workers} workers x {cfg.cpus_per_worker:g} CPUs do not fit the cluster's "
                          f"{have.get('CPU', 0):g} CPUs; lower num_workers or cpus_per_worker")


def _log_step_curves(jr, curves: dict[str, list[float]], cfg: TrainConfig, first_step: int = 1) -> dict:
    """The objective's per-step metrics (RL reward and its parts, format, CoT length, ...): a plot
    and each curve's last 10% of steps against its first (train/curves.py), logged and returned."""
    if not curves:
        return {}
    import matplotlib.pyplot as plt

    from .curves import plot_curves, trends

    fig = plot_curves(curves, f"{cfg.model}: {cfg.objective}, per optimizer step", first_step)
    jr.log_figure(fig, "plots/step_metrics.png")
    plt.close(fig)
    found = trends(curves)
    jr.log_metrics({f"trend/{name}/{k}": v for name, t in found.items() for k, v in t.items()
                    if k in ("first", "last", "z") and v is not None})
    return found


def _plot_loss(jr, losses: list[float], cfg: TrainConfig, first_step: int = 1) -> None:
    if not losses:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(range(first_step, first_step + len(losses)), losses, lw=1)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(f"{cfg.objective} loss")
    ax.set_title(f"{cfg.model}: training loss")
    ax.grid(alpha=0.3)
    jr.log_figure(fig, "plots/train_loss.png")
    plt.close(fig)
