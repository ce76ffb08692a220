"""MLflow tracking: one MLflow run per job run.

Where runs go:
  * ``MLFLOW_TRACKING_URI`` set: that server or store (the standard MLflow convention);
  * otherwise an embedded store, no server needed: ``sqlite:///$RAYRAG_HOME/mlflow/mlflow.db``
    with artifacts in ``$RAYRAG_HOME/mlflow/artifacts`` (``RAYRAG_HOME`` defaults to ``~/.rayrag``).
    It is an absolute path on purpose: under ``ray job submit`` the job's cwd is a temp copy
    of the working dir, and a relative store would vanish with it.

Each run gets the full config as params, tags ``rayrag.job``, ``rayrag.dataset`` and the git
commit, and the job's ``result.json``, run files and plots as artifacts.
"""
from __future__ import annotations

import contextlib
import re
import os
import subprocess
from pathlib import Path
from typing import Any, Iterator

from .config import flatten

DEFAULT_EXPERIMENT = "rayrag"


def rayrag_home() -> Path:
    return Path(os.environ.get("RAYRAG_HOME") or Path.home() / ".rayrag").expanduser().resolve()


def default_store() -> tuple[str, Path]:
    root = rayrag_home() / "mlflow"
    return f"sqlite:///{root / 'mlflow.db'}", root / "artifacts"


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or default_store()[0]


def setup(experiment: str = DEFAULT_EXPERIMENT) -> str:
    """Point mlflow at the configured store and make sure ``experiment`` exists. Returns its id."""
    import mlflow

    uri = tracking_uri()
    given = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    if given is None:
        # MLflow 3 also writes the uri into os.environ; left there, it would outrank RAYRAG_HOME
        # in every later tracking_uri() of this process (and its children): the first job's
        # store would catch all the runs that follow, whatever RAYRAG_HOME says then
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is not None:
        return exp.experiment_id
    artifact_location = None
    if uri.startswith("sqlite:///"):
        # A SQLite store's default artifact root is relative to the cwd (a Ray worker's temp
        # folder); pin it next to the database instead.
        db_dir = Path(uri[len("sqlite:///"):]).parent
        art = db_dir / "artifacts"
        art.mkdir(parents=True, exist_ok=True)
        artifact_location = f"{art.as_uri()}/{experiment}"
    try:
        return client.create_experiment(experiment, artifact_location=artifact_location)
    except Exception:
        # Another job created it in the meantime.
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            raise
        return exp.experiment_id


def git_commit() -> str:
    """The code's commit: ``RAYRAG_GIT_COMMIT`` (set it for `ray job submit`, whose working-dir
    upload has no .git), else ``git rev-parse HEAD`` next to the package or in the cwd."""
    if os.environ.get("RAYRAG_GIT_COMMIT"):
        return os.environ["RAYRAG_GIT_COMMIT"]
    for where in (Path(__file__).resolve().parent, Path.cwd()):
        try:
            out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True,
                                 text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    return "unknown"


def metric_key(*parts: str) -> str:
    """MLflow keys allow [A-Za-z0-9_-. /]; map '@' -> '_at_' and anything else to '_'."""
    key = "/".join(parts).replace("@", "_at_")
    return "".join(c if c.isalnum() or c in "_-./ " else "_" for c in key)


class JobRun:
    """Thin handle over the active MLflow run, used by jobs."""

    def __init__(self, run: Any):
        self.run = run
        self.run_id: str = run.info.run_id

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        import mlflow

        mlflow.log_metrics({metric_key(k): float(v) for k, v in metrics.items()}, step=step)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        import mlflow

        path = Path(path)
        if path.is_dir():
            mlflow.log_artifacts(str(path), artifact_path)
        else:
            mlflow.log_artifact(str(path), artifact_path)

    def log_figure(self, figure: Any, name: str) -> None:
        import mlflow

        mlflow.log_figure(figure, name)


# A value under such a name is a credential: MLflow params are readable by everyone with access
# to the tracking server, so it is logged as REDACTED. (Configs name keys by the variable or file
# that holds them, `api_key_env`/`api_key_file`, which are logged as they are.)
_SECRET = re.compile(r"(^|[._])(api_key|token|secret|password|passwd|credentials?)$", re.I)
REDACTED = "REDACTED"


def redact(params: dict[str, Any]) -> dict[str, Any]:
    return {k: (REDACTED if v not in (None, "") and _SECRET.search(k) else v) for k, v in params.items()}


@contextlib.contextmanager
def job_run(job: str, config: dict, dataset: str | None = None, experiment: str = DEFAULT_EXPERIMENT,
            run_name: str | None = None, tags: dict[str, str] | None = None) -> Iterator[JobRun]:
    """Open one MLflow run for a job; failures mark the run FAILED rather than leaving it RUNNING."""
    import mlflow

    exp_id = setup(experiment)
    all_tags = {"rayrag.job": job, "mlflow.source.git.commit": git_commit(), "rayrag.git_commit": git_commit()}
    if dataset:
        all_tags["rayrag.dataset"] = dataset
    all_tags.update(tags or {})
    with mlflow.start_run(experiment_id=exp_id, run_name=run_name or job, tags=all_tags) as run:
        params = {k: (",".join(map(str, v)) if isinstance(v, list) else v) for k, v in flatten(config).items()}
        mlflow.log_params({k: ("" if v is None else str(v)[:6000]) for k, v in redact(params).items()})
        yield JobRun(run)


def register_folder(run_id: str, artifact_path: str, name: str, description: str = "") -> str:
    """Register a folder already logged as run artifacts as a new version of model ``name``.

    ``mlflow.register_model("runs:/...")`` in MLflow 3 wants a LoggedModel (a flavor's
    ``log_model``); our models are plain HF / sentence-transformers folders that their own
    libraries load, so the version points at the artifact folder directly. Returns the version.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri())
    try:
        client.create_registered_model(name, description=description or None)
    except MlflowException as e:
        if e.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    source = f"{client.get_run(run_id).info.artifact_uri.rstrip('/')}/{artifact_path}"
    return client.create_model_version(name, source=source, run_id=run_id).version
