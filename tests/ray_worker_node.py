"""`ray start` for a second node on 127.0.0.1 (tests only).

Ray keeps a node on loopback only when RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, but with that
setting `ray start --address` refuses to add a second node, and with it unset the joining
node rewrites 127.0.0.1 to the host's external address. This wrapper lifts the refusal in
the CLI alone, so a two-node cluster runs entirely on 127.0.0.1. Usage: the same arguments
as `ray start`.
"""
import sys
import types

import ray._private.ray_constants as constants
import ray.scripts.scripts as scripts

scripts.ray_constants = types.SimpleNamespace(
    **{k: getattr(constants, k) for k in dir(constants) if not k.startswith("__")})
scripts.ray_constants.ENABLE_RAY_CLUSTER = True

if __name__ == "__main__":
    sys.exit(scripts.main())
