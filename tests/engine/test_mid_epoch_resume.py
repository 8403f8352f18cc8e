"""Checkpoints inside an epoch: ``--resume`` continues at the next step, bit for bit.

A stop is requested after a chosen step (what SIGTERM / SIGUSR1 / Ctrl-C do, see
``test_signals.py`` for the real signals): the run finishes that step, writes a checkpoint
holding its place in the epoch and exits with code 3; ``--resume`` then runs the rest and
the final checkpoint equals that of a run never stopped: weights, optimiser, MoCo's queue,
NPID's memory bank, HCSC's clustering, step and RNG.
"""

from __future__ import annotations

import json

import pytest
import torch

from sslkit.engine import trainer as trainer_module
from sslkit.engine.stopping import StopSignals
from sslkit.errors import EXIT_STOPPED
from tests.conftest import run_cli

COMMON = ["--data", "digits@256", "--batch-size", "32", "--epochs", "3", "--no-progress",
          "--seed", "5", "--set", "train.log_every=1", "--set", "train.plot_curves=false",
          "--set", "train.checkpoint_every_minutes=0"]  # fmt: skip
METHODS = {
    "moco": ["--set", "method.queue_size=128"],
    "npid": ["--set", "method.nce_k=32"],
    "hcsc": ["--set", "method.queue_size=128", "--set", "method.num_clusters=[12,6]",
             "--set", "method.warmup_epochs=1", "--set", "method.kmeans_nredo=1",
             "--set", "method.kmeans_niter=5"],
}  # fmt: skip


class StopAfter(StopSignals):
    """Requests a stop (as SIGTERM would) once the trainer has done ``step`` steps."""

    step = 0
    trainer = None

    @property
    def requested(self):  # read by the loop after every step
        if self._requested is None and StopAfter.trainer.step >= StopAfter.step:
            self._requested = "SIGTERM"
        return self._requested

    @requested.setter
    def requested(self, value):
        self._requested = value


@pytest.fixture
def stop_after(monkeypatch):
    """``stop_after(step)``: the next ``pretrain`` in this process stops after ``step``."""
    original_build = trainer_module.Trainer._build

    def build(self):
        StopAfter.trainer = self
        original_build(self)

    monkeypatch.setattr(trainer_module.Trainer, "_build", build)
    monkeypatch.setattr(trainer_module, "StopSignals", StopAfter)

    def arm(step: int) -> None:
        StopAfter.step = step

    return arm


def _pretrain(method: str, workdir, *extra, expect=0):
    return run_cli("pretrain", "--method", method, "--workdir", workdir, *COMMON,
                   *METHODS[method], *extra, expect=expect)  # fmt: skip


def assert_same_state(got, expected, where=""):
    """Tensors equal exactly, recursively through dicts and lists."""
    if isinstance(expected, torch.Tensor):
        assert torch.equal(got, expected), f"{where} differs"
    elif isinstance(expected, dict):
        assert got.keys() == expected.keys(), where
        for key in expected:
            assert_same_state(got[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list | tuple):
        assert len(got) == len(expected), where
        for index, (a, b) in enumerate(zip(got, expected, strict=True)):
            assert_same_state(a, b, f"{where}[{index}]")
    else:
        assert got == expected, where


def step_records(workdir):
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if r["kind"] == "step"], records


@pytest.mark.parametrize("method", list(METHODS))
def test_stop_inside_an_epoch_then_resume_equals_uninterrupted(tmp_path, method, stop_after,
                                                               one_thread):  # fmt: skip
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    stop_after(10_000)
    _pretrain(method, straight)

    stop_after(13)  # epoch 2 has steps 9..16; HCSC clustered at its start
    result = _pretrain(method, stopped, expect=EXIT_STOPPED)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines[-1].startswith("stopped by SIGTERM after step 13 (epoch 2)")
    assert "--resume" in lines[-1] and "--force" not in lines[-1]
    saved = torch.load(stopped / "checkpoint.pt", weights_only=True)
    assert (saved["epoch"], saved["step"]) == (1, 13)
    assert saved["epoch_position"]["batches_done"] == 5

    stop_after(10_000)
    result = _pretrain(method, stopped, "--resume")
    assert "resuming" in result.output and "epoch 2 after 5 of its 8 steps, step 14 of 24" \
        in result.output  # fmt: skip
    expected = torch.load(straight / "checkpoint.pt", weights_only=True)
    resumed = torch.load(stopped / "checkpoint.pt", weights_only=True)
    for key in ("epoch", "step", "encoder", "method_state", "optimizer", "rng"):
        assert_same_state(resumed[key], expected[key], key)
    assert resumed["epoch_position"] is None

    steps, records = step_records(stopped)
    assert [r["step"] for r in steps] == list(range(1, 25)), "each step logged exactly once"
    straight_epochs = [r for r in step_records(straight)[1] if r["kind"] == "epoch"]
    epochs = [r for r in records if r["kind"] == "epoch"]
    for mine, theirs in zip(epochs, straight_epochs, strict=True):  # epoch means equal too
        assert {k: v for k, v in mine.items() if k != "time"} == \
            {k: v for k, v in theirs.items() if k != "time"}  # fmt: skip


def test_step_cadence_writes_checkpoints_inside_epochs(tmp_path, monkeypatch, one_thread):
    """checkpoint_every_steps=3, checkpoint_every=2 over 2 epochs of 8 steps: steps 3, 6, 9,
    12, 15 inside epochs, 16 at the end (epoch 1's end is not due)."""
    written = []
    original = trainer_module.write_training_checkpoint

    def record(workdir, payload):
        position = payload["epoch_position"]
        written.append((payload["step"], position["batches_done"] if position else 0))
        return original(workdir, payload)

    monkeypatch.setattr(trainer_module, "write_training_checkpoint", record)
    workdir = tmp_path / "run"
    _pretrain("moco", workdir, "--epochs", "2", "--set", "train.checkpoint_every=2",
              "--set", "train.checkpoint_every_steps=3", "--set", "train.keep_checkpoints=true")
    assert written == [(3, 3), (6, 6), (9, 1), (12, 4), (15, 7), (16, 0)]
    # copies are kept of epoch-end checkpoints only
    assert sorted(p.name for p in workdir.glob("checkpoint_*.pt")) == ["checkpoint_epoch0002.pt"]


def test_mid_epoch_resume_with_another_batch_size_is_refused(tmp_path, stop_after, one_thread):
    """The place in an epoch is counted in batches: another batch size is one line, exit 2."""
    workdir = tmp_path / "run"
    stop_after(3)
    _pretrain("moco", workdir, expect=EXIT_STOPPED)
    stop_after(10_000)
    result = _pretrain("moco", workdir, "--resume", "--batch-size", "64", expect=2)
    assert "same processes and batch size" in result.output


def test_time_cadence_counts_from_the_last_checkpoint():
    """checkpoint_every_minutes: due once the minutes since the last save have passed;
    saving restarts the count; 0 turns it off; the end of the run is always due."""
    from sslkit.engine.checkpointing import CheckpointSchedule

    now = [0.0]
    schedule = CheckpointSchedule(every_epochs=0, every_steps=0, every_minutes=15,
                                  clock=lambda: now[0])  # fmt: skip
    now[0] = 14 * 60
    assert not schedule.due_after_step(7)
    now[0] = 15 * 60
    assert schedule.due_after_step(8)
    schedule.saved()
    now[0] = 20 * 60
    assert not schedule.due_after_step(9) and not schedule.due_at_epoch_end(1, 3, 9)
    assert schedule.due_at_epoch_end(3, 3, 30)
    off = CheckpointSchedule(every_epochs=0, every_steps=0, every_minutes=0,
                             clock=lambda: now[0])  # fmt: skip
    now[0] = 10**9
    assert not off.due_after_step(5)
