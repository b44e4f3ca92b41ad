import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

JOB = Path(__file__).with_name("ddp_job.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(tmp_path, nproc: int) -> dict:
    out = tmp_path / f"history_{nproc}.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if nproc == 1:
        cmd = [sys.executable, str(JOB), str(out)]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
               "--master_addr=127.0.0.1", f"--master_port={_free_port()}", str(JOB), str(out)]  # fmt: skip
    subprocess.run(cmd, check=True, env=env, timeout=600, capture_output=True)
    return json.loads(out.read_text())


@pytest.mark.slow
def test_ddp_two_cpu_processes_follow_the_single_process_trajectory(tmp_path):
    single, ddp = _run(tmp_path, 1), _run(tmp_path, 2)
    assert ddp["world_size"] == 2
    a = np.array([h["loss"] for h in single["history"]])
    b = np.array([h["loss"] for h in ddp["history"]])
    assert len(a) == len(b) == 4
    assert a[-1] < a[0]  # both learn
    assert b[-1] < b[0]
    # same shape: the relative drop over training agrees, though DDP sees twice the crops per step
    np.testing.assert_allclose(b / b[0], a / a[0], atol=0.35)
    assert np.isfinite([h["val_pcc"] for h in ddp["history"]]).all()
