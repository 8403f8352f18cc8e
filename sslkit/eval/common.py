"""Pieces every evaluation protocol shares: exact accuracies, per-epoch lr, summaries."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from sslkit.engine.optim import lr_factor
from sslkit.errors import BadInput


def epoch_lr_factor(epochs: int, schedule: str, milestones: Sequence[int], gamma: float,
                    epoch: int) -> float:  # fmt: skip
    """The lr multiplier of 0-based ``epoch``: ``step`` (x gamma at each milestone) or
    ``cosine`` (to 0 over ``epochs``), set once per epoch as the evaluation scripts do."""
    train = {"epochs": epochs, "warmup_epochs": 0, "warmup_start": 0.0, "schedule": schedule,
             "milestones": list(milestones), "gamma": gamma, "final_lr_ratio": 0.0}  # fmt: skip
    return lr_factor(train, float(epoch))


def augmentation_generator(device: torch.device, seed: int, epoch: int) -> torch.Generator:
    """The seeded generator of one epoch's training crops on this process.

    Every process draws its own crops (rank 0 draws those of a single-process run): with one
    seed for all ranks, image i of every rank's batch would get the same crop and flip.
    """
    from sslkit.distributed import rank

    return torch.Generator(device=device).manual_seed(seed * 1000003 + epoch
                                                      + 7919 * 1000003 * rank())  # fmt: skip


@dataclass
class Accuracy:
    """Top-1 / top-5 in % over an exact test set."""

    top1: float
    top5: float


@torch.no_grad()
def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> Accuracy:
    """Top-1 and top-5 (top-min(5, classes)) accuracy of ``N x C`` logits."""
    best = logits.topk(min(5, logits.shape[1]), dim=1).indices
    hits = best == labels[:, None]
    count = max(len(labels), 1)
    return Accuracy(100.0 * int(hits[:, 0].sum()) / count,
                    100.0 * int(hits.any(dim=1).sum()) / count)  # fmt: skip



@dataclass
class TrainState:
    """What ``--resume`` of an evaluation needs: weights, optimiser, epochs done, history."""

    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    epochs_done: int
    history: list[dict[str, float]] = field(default_factory=list)

    def as_payload(self) -> dict[str, Any]:
        """Plain types and tensors for ``torch.save`` (loadable with ``weights_only``)."""
        return asdict(self)


def summary(history: list[dict[str, Any]]) -> dict[str, Any]:
    """Final and best-epoch accuracies (the scripts report ``best_acc1``; we report both)."""
    if not history:
        raise BadInput("no epoch was trained: raise --epochs")
    final = history[-1]
    best = max(history, key=lambda row: row["top1"])
    return {"top1": final["top1"], "top5": final["top5"],
            "best": {"epoch": best["epoch"], "top1": best["top1"], "top5": best["top5"]},
            "epochs": final["epoch"]}  # fmt: skip


def save_state(path: Path, state: TrainState, meta: dict[str, Any]) -> None:
    """Write an evaluation's resumable state atomically, with ``meta`` (what it was run on)."""
    from sslkit.utils.atomic import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save({"meta": _plain(meta), **state.as_payload()}, tmp)


def load_state(path: Path, meta: dict[str, Any]) -> TrainState | None:
    """The state saved at ``path`` (``None`` if there is none); refuses one whose ``meta``
    (format, recipe, encoder, data) differs from this run's."""
    from sslkit.models.checkpoint import read_checkpoint

    if not path.exists():
        return None
    data = read_checkpoint(path)
    saved = _plain(data.get("meta", {}))
    for key, value in _plain(meta).items():
        if saved.get(key) != value:
            raise BadInput(f"{path} was made with another {key}: pass the same options to "
                           "--resume, or --force to start over")  # fmt: skip
    return TrainState(data["model"], data["optimizer"], int(data["epochs_done"]),
                      list(data["history"]))  # fmt: skip


def _plain(value: Any) -> Any:
    """Tuples as lists (as they come back from a checkpoint), recursively."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value
