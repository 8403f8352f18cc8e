"""What a training checkpoint holds, when one is written, and restoring a run from it.

A checkpoint is written at the end of an epoch or inside one. One written inside an
epoch also holds the position in it (``epoch_position``: the epoch's sample order, the
batches done, every rank's augmentation generator and global RNG, the epoch's running
loss sums), so ``--resume`` continues at the next step and the finished run equals an
uninterrupted one bit for bit (on the CPU).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from sslkit import __version__
from sslkit.models.checkpoint import read_checkpoint, save_checkpoint

CHECKPOINT_NAME = "checkpoint.pt"


def rng_state() -> dict[str, Any]:
    """Global torch RNG states (CPU and every CUDA device)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` saved (CUDA states only where CUDA exists)."""
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclasses.dataclass
class CheckpointSchedule:
    """When to write a checkpoint: every ``every_epochs`` epochs, every ``every_steps``
    steps and every ``every_minutes`` minutes since the last one (0 turns each off),
    whichever comes first, and always at the end of the run."""

    every_epochs: int = 1
    every_steps: int = 0
    every_minutes: float = 15.0
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        self.last = self.clock()

    @classmethod
    def from_train(cls, train: dict[str, Any]) -> CheckpointSchedule:
        """The schedule of a config's ``train`` section."""
        return cls(int(train["checkpoint_every"]), int(train["checkpoint_every_steps"]),
                   float(train["checkpoint_every_minutes"]))  # fmt: skip

    def due_after_step(self, step: int) -> bool:
        """True when the step count or the time since the last checkpoint calls for one."""
        by_steps = self.every_steps > 0 and step % self.every_steps == 0
        by_time = self.every_minutes > 0 and self.clock() - self.last >= self.every_minutes * 60
        return by_steps or by_time

    def due_at_epoch_end(self, epoch: int, epochs: int, step: int) -> bool:
        """True at the run's end, every ``every_epochs`` epochs, or when a step is due."""
        by_epochs = self.every_epochs > 0 and epoch % self.every_epochs == 0
        return epoch >= epochs or by_epochs or self.due_after_step(step)

    def saved(self) -> None:
        """Note that a checkpoint was just written (the time cadence restarts)."""
        self.last = self.clock()


def training_payload(
    *, method, config, epoch, step, optimizer, scaler, data_info, dataset_fingerprint,
    epoch_position: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything ``--resume`` and the other commands need, in plain types and tensors.

    ``epoch_position`` is ``None`` at an epoch's end, else where in ``epoch`` the run is
    (see :func:`epoch_position`).
    """
    encoder = {k: v.detach().cpu().clone() for k, v in method.encoder().state_dict().items()}
    return {
        "sslkit_version": __version__,
        "method": method.name,
        "arch": config["model"]["arch"],
        "config": config,
        "epoch": epoch,
        "step": step,
        "method_state": {k: _to_cpu(v) for k, v in method.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else {},
        "rng": rng_state(),
        "epoch_position": epoch_position,
        "data_info": dataclasses.asdict(data_info),
        "dataset_fingerprint": dataset_fingerprint,
        "encoder": encoder,
    }


def epoch_position(*, batches_done: int, batch_size: int, order: Any,
                   generators: list[torch.Tensor], rngs: list[dict[str, Any]],
                   totals: dict[str, float], images: int) -> dict[str, Any]:  # fmt: skip
    """Where inside an epoch a run is: ``batches_done`` steps of it, in the epoch's sample
    ``order`` (all ranks' indices), with the total ``batch_size``; every rank's augmentation
    generator state and global RNG state (rank order); the epoch's loss sums so far and the
    images this rank has seen in it."""
    return {
        "batches_done": int(batches_done),
        "batch_size": int(batch_size),
        "world_size": len(generators),
        "order": torch.as_tensor(order, dtype=torch.int64).clone(),
        "generators": [state.clone() for state in generators],
        "rngs": rngs,
        "totals": {key: float(value) for key, value in totals.items()},
        "images": int(images),
    }


def _to_cpu(value: Any) -> Any:
    """Tensors (also inside a method's extra-state dict) detached onto the CPU."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {key: _to_cpu(item) for key, item in value.items()}
    return value


def write_training_checkpoint(workdir: Path, payload: dict[str, Any]) -> Path:
    """Atomically (re)write ``workdir/checkpoint.pt``."""
    path = workdir / CHECKPOINT_NAME
    save_checkpoint(path, payload)
    return path


def read_training_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`write_training_checkpoint`."""
    return read_checkpoint(path)
