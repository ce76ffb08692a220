"""rayrag.ray_utils: a private local Ray started beside another Ray on the same machine."""
from __future__ import annotations

import json
import socket

import httpx

AGENT_DEFAULT_PORT = 52365  # Ray's DEFAULT_DASHBOARD_AGENT_LISTEN_PORT


def test_a_local_ray_beside_another_gets_its_agent_on_a_free_port():
    """Another process (here a plain socket; in the suite, the quickstart's Ray) holds the port
    every Ray node's dashboard agent asks for by default. ``start_local_ray`` still gives the
    agent its HTTP server, on a port of its own that it answers on and that the node records.
    With Ray's default the agent retries the bind for 3.3 s, gives up, and records -1."""
    import ray
    from ray._private import parameter
    from ray.experimental.internal_kv import _internal_kv_get

    from rayrag.ray_utils import start_local_ray

    original = parameter.RayParams
    holder = socket.socket()
    try:
        try:
            holder.bind(("127.0.0.1", AGENT_DEFAULT_PORT))
            holder.listen()
        except OSError:
            pass  # already held by another process (another Ray): the same situation
        start_local_ray(num_cpus=1)
        try:
            node = ray.nodes()[0]
            port = node["DashboardAgentListenPort"]
            ip, http_port, _ = json.loads(_internal_kv_get(
                f"DASHBOARD_AGENT_ADDR_NODE_ID_PREFIX:{node['NodeID']}", namespace=b"dashboard"))
            assert port not in (AGENT_DEFAULT_PORT, 0, -1) and http_port == port, (port, http_port)
            assert httpx.get(f"http://{ip}:{port}/api/local_raylet_healthz", timeout=30).status_code == 200
        finally:
            ray.shutdown()
    finally:
        holder.close()
    assert parameter.RayParams is original  # swapped for the one ray.init call only
