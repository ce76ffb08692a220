"""Connecting to Ray the same way locally and under ``ray job submit``."""
from __future__ import annotations

import os


def init_ray(num_cpus: int | None = None) -> bool:
    """Join the cluster in ``RAY_ADDRESS`` (set by ``ray job submit``) or start a local one.

    No runtime_env is passed: a submitted job already has one (working dir, env vars) and a
    second one here would replace it. A local instance inherits this process's environment,
    binds to 127.0.0.1 only and skips the dashboard (about 1 GB of RSS on a laptop).
    Returns True when this call started or joined Ray, so the caller knows to disconnect.
    """
    import ray

    if ray.is_initialized():
        return False
    if os.environ.get("RAY_ADDRESS"):
        ray.init()
        return True
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    ray.init(num_cpus=num_cpus, include_dashboard=False, _node_ip_address="127.0.0.1")
    return True
