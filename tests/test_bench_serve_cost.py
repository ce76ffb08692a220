"""bench/serve_cost.py and bench/asgi_baseline.py refuse bad arguments before any work."""
from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO


@pytest.mark.parametrize("script, args, message", [
    ("serve_cost.py", ["--variants", "shipped,nope"], "unknown variant(s) nope"),
    ("serve_cost.py", ["--model-threads", "0"], "--model-threads must be >= 1"),
    ("serve_cost.py", ["--fair-rounds", "-1"], "--fair-rounds must be >= 0"),
    ("serve_cost.py", ["--client", "curl"], "invalid choice: 'curl'"),
    ("asgi_baseline.py", ["--index", "x", "--model-threads", "0"], "must be >= 1"),
    ("asgi_baseline.py", ["--index", "x", "--threads", "0"], "must be >= 1"),
])
def test_bad_arguments_are_refused(script, args, message):
    r = subprocess.run([sys.executable, f"bench/{script}", *args], cwd=REPO, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and message in r.stderr, r.stderr[-2000:]
