"""The same pretrain command under torchrun with 2 CPU processes (gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch


@pytest.mark.distributed
def test_pretrain_under_torchrun_two_processes(tmp_path):
    """2 gloo processes train MoCo with shuffle-BN; rank 0 writes one checkpoint."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        "-m", "sslkit", "pretrain", "--method", "moco", "--data", "digits@256", "--epochs", "1",
        "--batch-size", "64", "--arch", "resnet18", "--set", "method.queue_size=256",
        "--workdir", str(tmp_path), "--no-progress", "--json", str(tmp_path / "summary.json"),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["steps"] == 256 // 64
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["method_state"]
    # both ranks pushed identical, gathered keys: the pointer moved by the global batch
    assert int(state["queue.pointer"]) == (4 * 64) % 256
