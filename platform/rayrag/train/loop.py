"""The training loop every objective runs on each Ray Train worker.

Per worker: build the objective's module, wrap it in the shared DeepSpeed engine, restore
the last checkpoint if Ray Train hands one over (after a worker failure, or when a run with
the same name and storage is started again), then step through deterministic micro-batches.

Checkpoints: every rank calls ``engine.save_checkpoint`` into its own temp folder (ZeRO
shards are per rank) and reports it; Ray Train merges the files of all ranks into one
checkpoint folder. ``state.json`` beside them holds (epoch, micro_step, step), the data
position. Reports are slow (about 2 s each), so they happen only at checkpoints and epoch ends.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

from ..io import atomic_write_json

TAG = "state"  # DeepSpeed checkpoint tag inside each reported folder


def _mlflow_logger(conf: dict | None, rank: int):
    """Rank 0 logs to the driver's MLflow run by id (no active-run global state)."""
    if rank != 0 or not conf:
        def log(metrics: dict[str, float], step: int) -> None:
            return None
        log.text = lambda text, name: None
        return log
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    from ..tracking import metric_key

    client = MlflowClient(conf["uri"])

    def log(metrics: dict[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        client.log_batch(conf["run_id"], metrics=[Metric(metric_key(k), float(v), now, step)
                                                  for k, v in metrics.items()])
    log.text = lambda text, name: client.log_text(conf["run_id"], text, name)
    return log


def train_loop_per_worker(config: dict) -> None:
    import numpy as np
    import ray
    import ray.train
    import torch
    import torch.distributed as dist
    from tqdm.auto import tqdm

    from ..assets import resolve_model
    from ..config import from_dict
    from .config import TrainConfig
    from .engine import full_parameters, make_engine
    from .examples import BatchPlan
    from .objectives import make_objective

    cfg = from_dict(TrainConfig, config["train"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    if device.type == "cpu":
        torch.set_num_threads(max(1, int(cfg.cpus_per_worker)))
    torch.manual_seed(cfg.seed)  # identical initial weights (random heads) on every rank
    np.random.seed(cfg.seed)
    data = ray.get(config["data"]) if isinstance(config["data"], ray.ObjectRef) else config["data"]
    examples, text = data["examples"], data["text"]
    log = _mlflow_logger(config.get("mlflow"), rank)

    objective = make_objective(cfg)
    objective.attach(data)
    module = objective.build(resolve_model(cfg.model).path)
    plan = BatchPlan(len(examples), cfg.batch_size, world, cfg.grad_accum)
    total_steps = min(cfg.max_steps or 10 ** 12, plan.steps_per_epoch * cfg.epochs)
    engine, scheduler = make_engine(module, cfg, world, total_steps)
    engine.train()

    state = {"epoch": 0, "micro": 0, "step": 0, "resumed_from_step": None}
    # The per-step record (loss of every optimizer step, mean over workers; the objective's own
    # diagnostics; wall time per step) travels in every checkpoint, so a run resumed after a
    # failure, or extended by a longer rerun, still reports its whole curve and trends from step 1.
    history: list[float] = []  # the equivalence tests read it
    extra_history: dict[str, list[float]] = {}
    step_seconds: list[float] = []  # bench/train_overhead.py reads it
    first_step = 1  # the step of history[0]: later than 1 only after a checkpoint from before this record
    ckpt = ray.train.get_checkpoint()
    if ckpt:
        with ckpt.as_directory() as d:
            engine.load_checkpoint(d, tag=TAG)  # model, optimizer, lr schedule (DeepSpeed files)
            saved = json.loads((Path(d) / "state.json").read_text())
            record = Path(d) / "history.json"
            record = json.loads(record.read_text()) if record.is_file() else None
        state.update(saved, resumed_from_step=saved["step"])
        if record:
            history, extra_history, step_seconds = record["losses"], record["metrics"], record["step_seconds"]
            first_step = record["first_step"]
        else:
            first_step = saved["step"] + 1
        if rank == 0:
            print(f"[train] resumed at epoch {state['epoch']} micro-batch {state['micro']} "
                  f"(optimizer step {state['step']})", flush=True)

    def report(metrics: dict, checkpoint: bool) -> None:
        # Must run on every rank: DeepSpeed's save and Ray's report are both collective.
        metrics = {**metrics, "step": state["step"], "epoch": state["epoch"],
                   "resumed_from_step": state["resumed_from_step"]}
        if not checkpoint:
            ray.train.report(metrics)
            return
        with tempfile.TemporaryDirectory(prefix="rayrag-ckpt-") as tmp:
            engine.save_checkpoint(tmp, tag=TAG)
            if rank == 0:
                (Path(tmp) / "state.json").write_text(json.dumps(state))
                (Path(tmp) / "history.json").write_text(json.dumps(
                    {"first_step": first_step, "losses": history, "metrics": extra_history,
                     "step_seconds": step_seconds}))
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))

    def mean_over_workers(x):
        """A float, or a list of floats in one all-reduce, averaged over workers."""
        if world == 1:
            return x
        t = torch.tensor(x if isinstance(x, list) else [x], dtype=torch.float64, device=device)
        dist.all_reduce(t)
        out = (t / world).tolist()
        return out if isinstance(x, list) else out[0]

    step_t0 = time.perf_counter()
    window_loss, window_samples, window_t0 = 0.0, 0, time.perf_counter()
    # the objective's own diagnostics: per micro-batch, then per optimizer step (mean over workers)
    step_extra: dict[str, list[float]] = {}
    window_extra: dict[str, list[float]] = {}
    done = state["step"] >= total_steps
    last_eval: dict[str, float] = {}

    def evaluate(prefix: str) -> dict[str, float]:
        """Rank 0 scores the current model while the others wait (all ranks gather under ZeRO-3)."""
        out: dict[str, float] = {}
        with full_parameters(engine, cfg.zero_stage):
            if rank == 0:
                t0 = time.perf_counter()
                out = {k.replace("eval/", prefix): v for k, v in objective.evaluate(engine.module, device).items()}
                out[f"{prefix}seconds"] = time.perf_counter() - t0
                print(f"[train] step {state['step']}: " + "  ".join(f"{k}={v:.4f}" for k, v in out.items()), flush=True)
                log(out, state["step"])
            if world > 1:
                dist.barrier()
        return out

    if objective.evaluates and cfg.eval.before_training and state["step"] == 0:
        last_eval.update(evaluate("eval_untrained/"))
    while not done and state["epoch"] < cfg.epochs:
        epoch = state["epoch"]
        order = plan.order(cfg.seed, epoch)
        step_loss = 0.0
        # Off a terminal (Ray worker logs, CI) each redraw is a new line: redraw rarely.
        bar = tqdm(total=plan.micro_per_epoch, initial=state["micro"], desc=f"train epoch {epoch}", unit="batch",
                   disable=rank != 0, mininterval=0.5 if sys.stderr.isatty() else 30)
        step_t0 = time.perf_counter()  # evaluation and checkpoints stay out of step times
        while state["micro"] < plan.micro_per_epoch:
            idx = plan.indices(order, state["micro"], rank)
            groups = [objective.group(examples[i], int(i), epoch, text) for i in idx]
            batch = {k: v.to(device) for k, v in objective.collate(groups).items()}
            objective.step, objective.epoch, objective.micro = state["step"], epoch, state["micro"]
            loss = objective.loss(engine, batch)
            for k, v in objective.metrics.items():
                step_extra.setdefault(k, []).append(v)
            engine.backward(loss)
            engine.step()
            step_loss += loss.item() / cfg.grad_accum
            window_samples += len(groups) * world
            state["micro"] += 1
            bar.update()
            if state["micro"] % cfg.grad_accum:
                continue
            state["step"] += 1
            step_loss = mean_over_workers(step_loss)
            history.append(step_loss)
            keys = sorted(step_extra)  # the same keys on every rank: each objective logs alike
            for k, v in zip(keys, mean_over_workers([sum(step_extra[k]) / len(step_extra[k]) for k in keys])):
                extra_history.setdefault(k, []).append(v)
                window_extra.setdefault(k, []).append(v)
            step_extra = {}
            step_seconds.append(time.perf_counter() - step_t0)
            bar.set_postfix(step=state["step"], loss=f"{step_loss:.4f}", refresh=False)
            window_loss += step_loss
            if state["step"] % cfg.log_every == 0:
                elapsed = time.perf_counter() - window_t0
                log({"train/loss": window_loss / cfg.log_every, "train/lr": scheduler.get_last_lr()[0],
                     "train/samples_per_s": window_samples / max(elapsed, 1e-9), "train/epoch": epoch,
                     **{k: sum(v) / len(v) for k, v in window_extra.items()}}, state["step"])
                window_loss, window_samples, window_t0 = 0.0, 0, time.perf_counter()
                window_extra = {}
            step_loss = 0.0
            done = state["step"] >= total_steps
            if done:
                break
            if cfg.checkpoint_every and state["step"] % cfg.checkpoint_every == 0:
                report({"train/loss": history[-1]}, checkpoint=True)
            step_t0 = time.perf_counter()
        bar.close()
        # not `text`: that name holds the passages every later epoch's groups are built from
        for name, body in objective.epoch_artifacts().items():
            log.text(body, name)
        # End of epoch (or of max_steps): evaluate, then checkpoint with the position moved on.
        metrics = {"train/loss": history[-1] if history else float("nan")}
        if objective.evaluates and ((epoch + 1) % cfg.eval.every_epochs == 0 or done):
            metrics.update(evaluate("eval/"))
            last_eval.update(metrics)
        if not done:
            state.update(epoch=epoch + 1, micro=0)
        done = done or state["epoch"] >= cfg.epochs
        if not done:
            report(metrics, checkpoint=True)

    # The final model: a plain HF / sentence-transformers folder written by rank 0.
    out = Path(config["model_dir"])
    with full_parameters(engine, cfg.zero_stage):
        if rank == 0:
            objective.export(engine.module, out)
        if world > 1:
            dist.barrier()
    final = {"losses": history, "metrics": extra_history, "step_seconds": step_seconds, "first_step": first_step,
             "total_steps": total_steps, "model_dir": str(out), "pid": os.getpid()}
    if rank == 0:
        atomic_write_json(out.parent / "loss_history.json", final)
    report({"train/loss": history[-1] if history else float("nan"), "finished": True,
            **{k: v for k, v in last_eval.items() if k.startswith("eval")}},
           checkpoint=True)
