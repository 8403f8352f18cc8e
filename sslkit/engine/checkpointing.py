"""What a training checkpoint holds, and restoring a run from it."""

from __future__ import annotations

import dataclasses
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


def training_payload(
    *, method, config, epoch, step, optimizer, scaler, data_info, dataset_fingerprint
) -> dict[str, Any]:
    """Everything ``--resume`` and the other commands need, in plain types and tensors."""
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
        "data_info": dataclasses.asdict(data_info),
        "dataset_fingerprint": dataset_fingerprint,
        "encoder": encoder,
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
