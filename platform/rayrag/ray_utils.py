"""Connecting to Ray the same way locally and under ``ray job submit``."""
from __future__ import annotations

import os
from typing import Iterator


def init_ray(num_cpus: int | None = None, dashboard: bool = False) -> bool:
    """Join the cluster in ``RAY_ADDRESS`` (set by ``ray job submit``; ``auto`` finds a local
    ``ray start`` cluster) or start a private local one.

    No runtime_env is passed: a submitted job already has one (working dir, env vars) and a
    second one here would replace it. A local instance inherits this process's environment,
    binds to 127.0.0.1 only and skips the dashboard (about 1 GB of RSS on a laptop).
    Returns True when this call started or joined Ray, so the caller knows to disconnect.
    ``dashboard=True`` starts it anyway (on 127.0.0.1, a free port): Ray Train's controller
    polls the State API, which the dashboard serves, and logs a warning every second without it.
    """
    import ray

    if ray.is_initialized():
        return False
    if os.environ.get("RAY_ADDRESS"):
        ray.init()
    else:
        _loopback_only()
        # address="local": always a fresh instance, never silently attaching to a `ray start`
        # cluster on this machine (set RAY_ADDRESS=auto, or use `ray job submit`, for that).
        extra = {"dashboard_host": "127.0.0.1", "dashboard_port": _free_port()} if dashboard else {}
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=dashboard, _node_ip_address="127.0.0.1",
                 **extra)
    stop_on_sigterm()
    return True


def rows_in_this_thread(ds) -> Iterator[dict]:
    """The rows of a Ray Dataset, read in the calling thread; for the jobs' shard actors, whose
    output rows are small (a shard's count, an error). Use it inside ``contextlib.closing``.

    Not ``Dataset.iter_rows()``: that reads the executor's output in a daemon thread of Ray
    Data's, which Ctrl-C and SIGTERM never reach, so the executor could outlive the job's
    ``ray.shutdown()``. Its late clean-up then auto-started a fresh local Ray and printed a
    traceback after "rayrag: stopped by Ctrl-C" (the encode job, seen once in the suite). Read
    here, the signal lands in Ray Data's own ``get_next``, which stops the executor while Ray is
    up, or in this generator, whose end drops the output iterator (its ``__del__`` stops the
    executor) before the caller shuts Ray down.
    """
    import ray
    from ray.data.block import BlockAccessor

    for bundle in ds.iter_internal_ref_bundles():
        for block in ray.get(bundle.block_refs):
            yield from BlockAccessor.for_block(block).iter_rows(public_row_format=True)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the main thread is, so it unwinds like Ctrl-C does."""


def stop_on_sigterm() -> None:
    """Make SIGTERM (``kill``, Kubernetes, ``ray job stop``) unwind like Ctrl-C.

    ray.init installs a native failure handler for SIGTERM that prints a stack trace and aborts
    the driver; the ``finally`` blocks that call ``ray.shutdown()`` then never run, and a local
    instance's dashboard and runtime-env agents outlive it (measured on Ray 2.60: both left
    running, deaf to a second SIGTERM). Raising here runs those blocks, so ``ray.shutdown()``
    stops every process the job started. Installed after ray.init, which would replace it.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers can only be set from the main thread

    def _raise(signum, frame):
        raise Terminated()

    signal.signal(signal.SIGTERM, _raise)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _loopback_only() -> None:
    """Keep a local Ray on 127.0.0.1.

    Ray binds its node to 127.0.0.1 only when "clusters" are disabled
    (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0), a flag it reads once at import. ``_node_ip_address``
    alone still leaves raylet and GCS listening on every interface. The CLI sets the variable
    before Ray is imported; for library callers that imported Ray already, the constant is set
    too. Never done when joining a cluster: there the node's real address is needed.
    """
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    try:
        from ray._private import ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = False
    except (ImportError, AttributeError):
        pass
