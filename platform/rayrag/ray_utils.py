"""Connecting to Ray the same way locally and under ``ray job submit``."""
from __future__ import annotations

import contextlib
import os
from typing import Iterator


# glibc allocator settings for Ray workers that run torch models on CPU (the encode job's
# actors). By default glibc gives each thread its own arena, whose heaps hold at most 64 MB, and
# serves larger blocks (or any above its mmap threshold) with a fresh mmap() that free() unmaps.
# Every batch's large tensors (MiniLM's FFN activations, 64 x 256 x 1536 floats = 100 MB;
# SPLADE's vocabulary logits, up to 16 texts x 256 tokens x 30,522 = 500 MB) then arrive as new
# pages that the kernel faults in and zeroes. One arena, no mmap below 1 GiB and no trimming let
# the next batch reuse the freed blocks. Measured on 2 cores, one torch thread outside the main
# thread as in a Ray actor: MiniLM on 64 SciFact abstracts 5.18 -> 4.61-4.69 s a batch,
# SPLADE-tiny on 32 abstracts 1.63 -> 1.28-1.33 s; the vectors are bit-identical (the same
# kernels; only where the memory comes from changes). The cost: a worker keeps its peak memory
# between batches instead of handing it back. glibc reads these once at start, so they go into
# the worker's environment; elsewhere (musl, macOS) they are ignored.
CPU_WORKER_MALLOC_ENV = {"MALLOC_ARENA_MAX": "1", "MALLOC_MMAP_THRESHOLD_": str(1 << 30),
                         "MALLOC_TRIM_THRESHOLD_": str(1 << 31)}


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
        start_local_ray(num_cpus, dashboard)
    stop_on_sigterm()
    return True


def start_local_ray(num_cpus: int | None = None, dashboard: bool = False, **init_kwargs):
    """Start a private Ray on 127.0.0.1 and connect to it (``init_ray``'s local case; the tests
    and benchmarks call it directly). ``init_kwargs`` go to ``ray.init`` (``log_to_driver``).

    ``address="local"``: always a fresh instance, never silently attaching to a `ray start`
    cluster on this machine (set RAY_ADDRESS=auto, or use `ray job submit`, for that).
    """
    import ray

    _loopback_only()
    # One node that nothing preempts: Ray Train's preemption watcher (an actor process per
    # training run, polling node states every 5 s, about 1.3 CPU-s here) has nothing to watch.
    # The controller reads this from its environment, which a local Ray inherits from ours.
    os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
    extra = {"dashboard_host": "127.0.0.1", "dashboard_port": free_port()} if dashboard else {}
    with _agent_on_a_free_port():
        return ray.init(address="local", num_cpus=num_cpus, include_dashboard=dashboard,
                        _node_ip_address="127.0.0.1", **extra, **init_kwargs)


@contextlib.contextmanager
def _agent_on_a_free_port() -> Iterator[None]:
    """Inside: a local Ray that ``ray.init`` starts gives its dashboard agent a free HTTP port.

    Every Ray node runs a dashboard agent (with or without the dashboard) whose HTTP server
    asks for port 52365 unless told otherwise, and Ray 2.60's ``ray.init`` has no argument
    for it (``ray start`` has ``--dashboard-agent-listen-port``). With another Ray already on
    the machine (a ``serve run`` in a second terminal; the test suite beside the quickstart)
    the agent retries that bind six times over 3.3 s, gives up on its HTTP server, and
    ``ray.init`` waits for it: measured 6.6 s to start against 2.5-3.5 s alone
    (ray-project/ray#14763). Port 0 lets the agent bind a free port and report it, which
    ``dashboard/agent.py`` supports; the class ``ray.init`` builds its parameters from is
    swapped for one with that default during this call only. If a later Ray moves that class,
    nothing is swapped and Ray starts as before (tests/test_ray_utils.py notices).
    """
    try:
        from ray._private import parameter
    except ImportError:
        parameter = None
    original = getattr(parameter, "RayParams", None)
    if original is None:
        yield
        return

    class _FreeAgentPort(original):
        def __init__(self, *args, **kwargs):
            kwargs.setdefault("dashboard_agent_listen_port", 0)
            super().__init__(*args, **kwargs)

    parameter.RayParams = _FreeAgentPort
    try:
        yield
    finally:
        parameter.RayParams = original


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


def free_port() -> int:
    """A loopback TCP port that is free now: bind it at once, since later it may be taken."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_port_free(host: str, port: int, setting: str, zero: str) -> None:
    """Refuse a fixed HTTP port that something holds, before any work starts (a server that
    binds it only after minutes of work would fail then). ``setting`` names where the port came
    from and ``zero`` how to ask for any free port, so the error says what to change.

    The bind sets SO_REUSEADDR, as uvicorn (Serve's proxy) does: a port whose last connection is
    only in TIME_WAIT is free to it, a listening socket is not."""
    import socket

    from .errors import ConfigError

    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            raise ConfigError(f"{setting} {port} on {host} is in use ({e.strerror}): stop what holds it, "
                              f"pass another, or {zero} for any free port") from None


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
