"""``sslkit linear`` and ``sslkit semisup`` under torchrun with 2 CPU processes (gloo).

The linear probe on cached features trains every rank on the whole (identical) feature
set with averaged gradients, so 2 processes must reproduce the 1-process history exactly.
The augmented probe and the fine-tuning split each global batch over the ranks: they must
run, write their files once (rank 0) and give a sensible result.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.distributed


def _sslkit(processes: int, *args) -> None:
    launcher = ([sys.executable] if processes == 1 else
                [sys.executable, "-m", "torch.distributed.run", "--standalone",
                 "--nproc-per-node", str(processes)])  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*launcher, "-m", "sslkit", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]


def test_linear_on_features_two_processes_equal_one(digits_run, tmp_path):
    """Same recipe and seed: the per-epoch history of 2 processes equals 1 process's."""
    results = {}
    for processes in (1, 2):
        out = tmp_path / f"linear-{processes}.json"
        _sslkit(processes, "linear", "--checkpoint", digits_run / "checkpoint.pt", "--data",
                "digits", "--mode", "features", "--recipe", "mocov2", "--epochs", "3",
                "--cache-dir", tmp_path / "cache", "--device", "cpu", "--json", out)
        results[processes] = json.loads(out.read_text())
    assert results[2]["history"] == results[1]["history"]
    assert results[2]["result"]["top1"] == results[1]["result"]["top1"] > 15.0  # chance: 10


def test_augmented_linear_and_semisup_under_torchrun(digits_run, tmp_path):
    """The augmented probe and 10 %-label fine-tuning on 2 processes: one set of files."""
    probe, semi = tmp_path / "probe", tmp_path / "semi"
    _sslkit(2, "linear", "--checkpoint", digits_run / "checkpoint.pt", "--data", "digits",
            "--recipe", "pcl", "--lr", "0.001", "--epochs", "2", "--batch-size", "128",
            "--device", "cpu", "--workdir", probe)
    result = json.loads((probe / "linear.json").read_text())
    assert result["mode"] == "augment" and len(result["history"]) == 2
    assert result["result"]["best"]["top1"] > 15.0  # chance: 10 (1 process: 27.6 at 3 epochs)
    assert torch.load(probe / "linear.pt", weights_only=True)["epochs_done"] == 2
    _sslkit(2, "semisup", "--checkpoint", digits_run / "checkpoint.pt", "--data", "digits",
            "--labels", "0.1", "--recipe", "pcl", "--epochs", "2", "--batch-size", "64",
            "--device", "cpu", "--workdir", semi)
    result = json.loads((semi / "semisup.json").read_text())
    assert result["labelled"]["images"] == 136 and result["result"]["epochs"] == 2
    assert sorted(path.name for path in Path(semi).iterdir()) == ["semisup.json", "semisup.pt"]
