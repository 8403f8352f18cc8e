"""Kill tests: ``pretrain`` SIGKILLed in the middle of an epoch resumes to the same state.

Each run is a real ``python -m sslkit pretrain`` process. With checkpoints at epoch ends
only (the 15-minute cadence never comes due here), the killed run loses the
half-finished epoch (checkpoints are written atomically), relaunching with
``--resume`` repeats that epoch from the last checkpoint (weights, optimiser, RNG and the
method's state: MoCo's queue, NPID's memory bank, HCSC's clustering), and the finished
run equals one that was never interrupted.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from sslkit.utils.atomic import TMP_MARKER

COMMON = ["--data", "digits@512", "--batch-size", "32", "--epochs", "3", "--no-progress",
          "--set", "train.checkpoint_every=1", "--set", "train.log_every=1",
          "--set", "train.schedule_unit=epoch", "--seed", "3"]  # fmt: skip
METHODS = {
    "moco": ["--set", "method.queue_size=256"],  # the queue
    "npid": ["--set", "method.nce_k=64"],  # the memory bank
    "hcsc": ["--set", "method.queue_size=256", "--set", "method.num_clusters=[16,8]",
             "--set", "method.warmup_epochs=1", "--set", "method.kmeans_nredo=1"],  # clusters
}  # fmt: skip


def _command(method: str, workdir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "sslkit", "pretrain", "--method", method,
            "--workdir", str(workdir), *COMMON, *METHODS[method], *extra]  # fmt: skip


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1"}  # one thread: identical float reductions


def _run(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True, env=_env(), timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


def _steps_seen(workdir: Path) -> list[dict]:
    path = workdir / "metrics.jsonl"
    if not path.is_file():
        return []
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:  # a line being written right now
            break
    return [r for r in records if r["kind"] == "step"]


def _kill_in_epoch(command: list[str], workdir: Path, epoch: int) -> None:
    """Start ``command``; SIGKILL it once it has logged a step of ``epoch`` (1-based)."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               env=_env())  # fmt: skip
    deadline = time.monotonic() + 600
    try:
        while not any(r["epoch"] == epoch for r in _steps_seen(workdir)):
            if process.poll() is not None:
                pytest.fail(f"run ended before epoch {epoch}: {process.stderr.read()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"no step of epoch {epoch} within 600 s")
            time.sleep(0.01)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
        process.stderr.close()


@pytest.mark.slow
@pytest.mark.parametrize("method", list(METHODS))
def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(tmp_path, method):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    _run(_command(method, straight))
    _kill_in_epoch(_command(method, killed), killed, epoch=2)

    # only complete files are visible: the epoch-1 checkpoint, nothing half-written
    state = torch.load(killed / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 1, "the kill should land inside epoch 2"
    assert max(r["step"] for r in _steps_seen(killed)) > state["step"]  # steps were lost
    # what a kill during a checkpoint write leaves behind: a stale temporary file
    stale = killed / f"{TMP_MARKER}checkpoint.pt.abc123"
    stale.write_bytes(b"half a checkpoint")

    _run(_command(method, killed, "--resume"))
    assert not stale.exists(), "the relaunch removes stale temporary files"
    assert not [p.name for p in killed.iterdir() if p.name.startswith(TMP_MARKER)]
    expected = torch.load(straight / "checkpoint.pt", weights_only=True)
    resumed = torch.load(killed / "checkpoint.pt", weights_only=True)
    assert resumed["epoch"] == expected["epoch"] == 3
    assert resumed["step"] == expected["step"]
    assert expected["method_state"].keys() == resumed["method_state"].keys()
    for key, value in expected["method_state"].items():
        if isinstance(value, dict):  # a method's extra state (HCSC's clustering)
            assert value.keys() == resumed["method_state"][key].keys()
            for name, item in value.items():
                got = resumed["method_state"][key][name]
                if isinstance(item, torch.Tensor):
                    torch.testing.assert_close(got, item, msg=f"{key}.{name}")
                else:
                    assert got == item, f"{key}.{name}"
        else:
            torch.testing.assert_close(resumed["method_state"][key], value, msg=key)
