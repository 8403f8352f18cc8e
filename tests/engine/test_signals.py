"""Real signals to a real ``python -m sslkit pretrain``: graceful stops and one writer.

SIGTERM, SIGUSR1 and one Ctrl-C finish the step, write a checkpoint holding the place in
the epoch and exit 3 with one line saying how to resume; a second Ctrl-C stops at once
(exit 130; the handler is tried in-process, where the two signals cannot merge into one
as two quick kills of a busy process may); a second run on the same workdir is refused
while the first runs, and not after the first was SIGKILLed (the flock dies with it).
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

from sslkit.engine.stopping import StopSignals
from sslkit.engine.workdir_lock import LOCK_NAME
from sslkit.errors import EXIT_INTERRUPTED, EXIT_STOPPED

ARGS = ["--method", "moco", "--data", "digits@512", "--batch-size", "32", "--epochs", "3",
        "--no-progress", "--set", "method.queue_size=128", "--set", "train.log_every=1",
        "--set", "train.plot_curves=false"]  # fmt: skip


def _start(workdir: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "sslkit", "pretrain", *ARGS, "--workdir",
                             str(workdir), *extra], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip


def _steps(workdir: Path) -> list[int]:
    path = workdir / "metrics.jsonl"
    if not path.is_file():
        return []
    steps = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            break
        if record["kind"] == "step":
            steps.append(record["step"])
    return steps


def _wait_for_step(process: subprocess.Popen, workdir: Path, step: int) -> None:
    deadline = time.monotonic() + 300
    while not _steps(workdir) or max(_steps(workdir)) < step:
        if process.poll() is not None:
            pytest.fail(f"run ended early: {process.stderr.read()[-2000:]}")
        assert time.monotonic() < deadline, f"no step {step} within 300 s"
        time.sleep(0.02)


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGUSR1", "SIGINT"])
def test_signal_finishes_the_step_checkpoints_and_says_how_to_resume(tmp_path, signal_name):
    workdir = tmp_path / "run"
    process = _start(workdir)
    _wait_for_step(process, workdir, 3)
    process.send_signal(getattr(signal, signal_name))
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == EXIT_STOPPED, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"stopped by {signal_name} after step ")
    assert "Traceback" not in stderr and "Aborted" not in stderr
    assert lines[0].endswith("--resume") and "continue with: sslkit pretrain" in lines[0]
    saved = torch.load(workdir / "checkpoint.pt", weights_only=True)
    assert saved["step"] == max(_steps(workdir)), "the checkpoint holds every step done"
    assert saved["epoch_position"]["batches_done"] == saved["step"] % 16


def test_second_ctrl_c_stops_at_once():
    """The first Ctrl-C only asks for a stop; one more while it is pending raises at once;
    the handlers are put back afterwards."""
    before = signal.getsignal(signal.SIGINT)
    with StopSignals() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested == "SIGTERM"
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before
    with StopSignals() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.requested == "SIGINT"
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)


def test_ctrl_c_that_stops_at_once_is_one_line_exit_130(tmp_path, monkeypatch):
    """What the CLI makes of a KeyboardInterrupt (a second Ctrl-C, or one before training
    starts): one line, exit 130, no "Aborted!" and no traceback."""
    from sslkit.engine.trainer import Trainer
    from tests.conftest import run_cli

    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "fit", interrupted)
    result = run_cli("pretrain", *ARGS, "--workdir", tmp_path / "run", expect=EXIT_INTERRUPTED)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("interrupted (Ctrl-C): stopped at once")
    assert "Aborted" not in result.output and "Traceback" not in result.output


def test_second_run_on_a_workdir_is_refused_and_a_killed_runs_lock_is_not(tmp_path):
    workdir = tmp_path / "run"
    first = _start(workdir)
    _wait_for_step(first, workdir, 1)
    second = _start(workdir, "--resume")
    _, stderr = second.communicate(timeout=300)
    assert second.returncode == 2
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "in use by another sslkit run" in lines[0]
    assert f"pid {first.pid}" in lines[0]
    first.send_signal(signal.SIGKILL)
    first.communicate()
    third = _start(workdir, "--resume", "--epochs", "1")
    _, stderr = third.communicate(timeout=300)
    assert third.returncode == 0, stderr
    assert (workdir / LOCK_NAME).exists()
