"""DeepSpeed's engine starts whatever a killed process left in the torch extensions cache.

A worker SIGKILLed while DeepSpeed JIT-built its shared-memory comm op left the build's lock
file behind, and every later DeepSpeed init on the machine waited on it forever (the suite hung
in CI). The engine must start without building that op at all.
"""
import subprocess
import sys
import textwrap

from tests.conftest import free_port

SCRIPT = textwrap.dedent("""
    import torch
    from rayrag.train.config import TrainConfig
    from rayrag.train.engine import make_engine

    engine, _ = make_engine(torch.nn.Linear(4, 2), TrainConfig(), world=1, total_steps=2)
    loss = engine(torch.ones(3, 4)).sum()
    engine.backward(loss)
    engine.step()
    print("stepped", flush=True)
    # A script that let DeepSpeed create the process group closes it: left open, gloo's threads
    # are still running at interpreter exit and the process sometimes aborts (CI, stop 46:
    # "terminate called without an active exception", rc -6, after "stepped").
    torch.distributed.destroy_process_group()
""")


def test_engine_starts_beside_a_stale_extension_build_lock(tmp_path):
    stale = tmp_path / "ext" / "py311_cpu" / "deepspeed_shm_comm"
    stale.mkdir(parents=True)
    (stale / "lock").touch()  # what a process killed mid-build leaves
    (tmp_path / "ext" / "deepspeed_shm_comm").mkdir()
    (tmp_path / "ext" / "deepspeed_shm_comm" / "lock").touch()
    env = {"TORCH_EXTENSIONS_DIR": str(tmp_path / "ext"), "RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1",
           "LOCAL_WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}
    import os

    out = subprocess.run([sys.executable, "-c", SCRIPT], env={**os.environ, **env}, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0 and "stepped" in out.stdout, out.stderr[-3000:]
    built = [p.name for p in (tmp_path / "ext").rglob("*.so")]
    assert not built, f"DeepSpeed built {built}"
