"""What a job is: the entry each job module declares and the ``rayrag`` command is built from.

A job module (``eval/job.py``, ``datagen/mine.py``, ...) holds its config class and its run
function and ends with a ``Job`` naming both; ``cli.JOBS`` lists the modules' jobs. From that
one entry come ``rayrag <name>``, ``python -m jobs.<name>`` and the tests that load every
config and parse every documented command.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass(frozen=True)
class Job:
    name: str  # `rayrag <name>`; the entry point is jobs/<name with "_" for "-">.py
    config: type  # a dataclass: defaults <- --config YAML <- key=value overrides <- flags
    run: Callable[[Any], Any]  # the library call, given the validated config
    help: str  # one line in `rayrag --help`
    description: str  # the paragraph of `rayrag <name> --help`
    # More of that paragraph, computed only when help is shown (what costs an import to find,
    # such as the train jobs' registered objectives, which import torch)
    details: Callable[[], str] | None = None
    # The few config keys typed every day, offered as flags (output_dir -> --output-dir) on top
    # of key=value; every other value is set in the config file or as key=value.
    flags: tuple[str, ...] = ()
    defaults: dict[str, Any] = field(default_factory=dict)  # this job's defaults, beneath the YAML
    check: Callable[[Any], None] | None = None  # checks beyond the config class's own validate()
    summary: Callable[[Any, Any], str] | None = None  # (config, result) -> what to print at the end

    def __post_init__(self) -> None:
        keys = {f.name for f in dataclasses.fields(self.config)}
        unknown = [k for k in (*self.flags, *self.defaults) if k not in keys]
        if unknown:
            raise TypeError(f"job {self.name!r}: {unknown} are not keys of {self.config.__name__}")

    @property
    def module(self) -> str:
        """The entry point: ``python -m jobs.<module>``."""
        return f"jobs.{self.name.replace('-', '_')}"
