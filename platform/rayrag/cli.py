"""The ``rayrag`` command, built from the job table below; ``jobs/<job>.py`` call the same parser.

A job's values come from one chain: its config class's defaults <- the job's own defaults <-
``--config`` YAML <- ``key=value`` overrides <- the few everyday flags the job names (each one
a config key). ``serve``, ``data`` and ``models`` are tools with their own subcommands.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from .datagen.cot import JOB as COT
from .datagen.mine import JOB as MINE
from .datagen.rewrite import JOB as REWRITE
from .datagen.teacher_scores import JOB as TEACHER_SCORES
from .encode.pipeline import JOB as ENCODE
from .errors import RayragError
from .eval.job import JOB as EVALUATE
from .eval.mtrag import JOB as EVALUATE_MTRAG
from .index.build import JOB as INDEX
from .index.delete import JOB as INDEX_DELETE
from .job import Job
from .quickstart import JOB as QUICKSTART
from .train.job import DENSE_JOB, REASONING_JOB, RERANKER_JOB, SPARSE_JOB

# Every job, in `rayrag --help` order. A new job is one module ending in a Job, plus a line here.
JOBS: dict[str, Job] = {j.name: j for j in (QUICKSTART, EVALUATE, EVALUATE_MTRAG, ENCODE, INDEX, INDEX_DELETE, MINE, COT,
                                                REWRITE, TEACHER_SCORES, DENSE_JOB, RERANKER_JOB, SPARSE_JOB,
                                                REASONING_JOB)}
TOOLS = ("serve", "data", "models")


class _JobHelp(argparse.HelpFormatter):
    """Appends a job's ``details`` to its description only when help is shown, so finding them
    (the train jobs' objectives import torch) costs no other command its startup time."""

    def add_text(self, text):
        super().add_text(text)
        job = JOBS.get(self._prog.split()[-1])
        if job is not None and job.details is not None and text == job.description:
            super().add_text(job.details())


def _add_job(sub, job: Job) -> None:
    p = sub.add_parser(job.name, help=job.help, description=job.description, epilog=_keys(job.config),
                       formatter_class=_JobHelp)
    p.add_argument("--config", help="YAML config (see jobs/configs/); key=value overrides apply on top")
    defaults = job.config()
    for key in job.flags:
        default = job.defaults.get(key, getattr(defaults, key))
        p.add_argument(f"--{key.replace('_', '-')}", dest=key, metavar=key.split("_")[-1].upper(),
                       help=f"same as {key}=... (default: {'not set' if default is None else default})")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="overrides of the config keys listed below, after --config; dotted for nested keys "
                        "(options.batch_size=32), lists in brackets (retrievers=[bm25,hybrid(bm25,minilm)])")
    p.set_defaults(job=job)


def _keys(cls) -> str:
    """The epilog of a job's --help: every key it accepts, since most have no flag."""
    import typing

    hints = typing.get_type_hints(cls)
    return "config keys: " + ", ".join(f.name + (".*" if dataclasses.is_dataclass(hints[f.name]) else "")
                                       for f in dataclasses.fields(cls))


def job_config(job: Job, args: argparse.Namespace) -> Any:
    """The validated config of a parsed ``rayrag <job>`` command; nothing has run yet."""
    from .config import load_config

    flags = {key: getattr(args, key) for key in job.flags}
    cfg = load_config(job.config, args.config, args.overrides, base=job.defaults, **flags)
    if job.check:
        job.check(cfg)
    return cfg


def _data_parser(sub) -> None:
    p = sub.add_parser("data", help="download or check datasets", description="Dataset utilities.")
    dsub = p.add_subparsers(dest="data_cmd", required=True, metavar="{download,check}")
    d = dsub.add_parser("download", help="fetch a public BEIR dataset (needs a network)",
                        description="Download a BEIR dataset zip into the data dir and validate it.")
    d.add_argument("name", help="BEIR dataset name, e.g. scifact")
    d.add_argument("--data-dir", help="destination (default $RAYRAG_DATA_DIR)")
    d.set_defaults(func=_cmd_download)
    c = dsub.add_parser("check", help="validate a BEIR dataset and print its size",
                        description="Load a BEIR dataset split with every check the jobs run.")
    c.add_argument("name")
    c.add_argument("--split", default="test")
    c.add_argument("--data-dir")
    c.set_defaults(func=_cmd_check)


def _cmd_download(args) -> int:
    from .data.download import download_beir
    from .data.locate import ENV

    root = args.data_dir or os.environ.get(ENV)
    if not root:
        raise RayragError(f"no data directory: pass --data-dir or set {ENV}")
    print(f"downloaded to {download_beir(args.name, Path(root).expanduser())}")
    return 0


def _cmd_check(args) -> int:
    from .data import dataset_dir, load_beir

    print(load_beir(dataset_dir(args.name, args.data_dir), args.split))
    return 0


def _models_parser(sub) -> None:
    p = sub.add_parser("models", help="list or resolve model names", description="Built-in model names.")
    msub = p.add_subparsers(dest="models_cmd", required=True, metavar="{list,resolve}")
    msub.add_parser("list", help="list built-in names", description="List built-in model names.").set_defaults(
        func=_cmd_models_list)
    r = msub.add_parser("resolve", help="print the local folder a name resolves to",
                        description="Resolve a built-in name, folder or HF id to a local folder.")
    r.add_argument("name")
    r.set_defaults(func=_cmd_models_resolve)


def _cmd_models_list(args) -> int:
    from .assets import BUILTINS

    for b in BUILTINS.values():
        print(f"{b.name:<14} {b.kind:<7} pip: {b.package:<22} {b.description}")
    return 0


def _cmd_models_resolve(args) -> int:
    from .assets import resolve_model

    print(json.dumps(dataclasses.asdict(resolve_model(args.name)), indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rayrag", description="Retrieval for RAG on Ray.")
    sub = p.add_subparsers(dest="command", required=True, metavar="{" + ",".join([*JOBS, *TOOLS]) + "}")
    for job in JOBS.values():
        _add_job(sub, job)
    from .serve.cli import register as _serve_parser  # lazy inside: Ray Serve is imported only when run

    _serve_parser(sub)
    _data_parser(sub)
    _models_parser(sub)
    return p


def parse(argv: Sequence[str] | None) -> tuple[argparse.Namespace, Any]:
    """Parse a command line and, for a job, load and check its config: everything but running it."""
    args = build_parser().parse_args(argv)
    job = getattr(args, "job", None)
    return args, (job_config(job, args) if job else None)


def main(argv: Sequence[str] | None = None) -> int:
    if not os.environ.get("RAY_ADDRESS"):
        # A job that starts its own Ray keeps it on loopback; Ray reads this at import time.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        args, cfg = parse(argv)
        if cfg is None:
            return args.func(args)
        result = args.job.run(cfg)
        if args.job.summary:
            print(args.job.summary(cfg, result))
        return 0
    except RayragError as e:
        print(f"rayrag: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM once Ray is up (ray_utils.stop_on_sigterm)
        # the job's own `finally` blocks have run by now: Ray shut down, temp files removed
        from .ray_utils import Terminated

        sigterm = isinstance(e, Terminated)
        print(f"rayrag: stopped by {'SIGTERM' if sigterm else 'Ctrl-C'}", file=sys.stderr)
        return 143 if sigterm else 130


def job_main(entry_file: str) -> None:
    """``python -m jobs.<module>``: the ``rayrag`` command named by the entry point's file."""
    sys.exit(main([Path(entry_file).stem.replace("_", "-"), *sys.argv[1:]]))


if __name__ == "__main__":
    sys.exit(main())
