"""Training metrics: ``metrics.jsonl`` in the workdir (and optionally TensorBoard scalars),
and a rich progress bar on stderr."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from sslkit.errors import BadInput


class MetricsLog:
    """Appends one JSON object per line to ``metrics.jsonl`` (rank 0 only).

    With ``tensorboard_dir`` the same records also go to TensorBoard (see
    :class:`TensorBoardScalars`). Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, path: Path, enabled: bool, tensorboard_dir: Path | None = None) -> None:
        self.path = path
        self.enabled = enabled
        self.tensorboard: TensorBoardScalars | None = None
        if enabled and tensorboard_dir is not None:
            self.tensorboard = TensorBoardScalars(tensorboard_dir)

    def write(self, record: dict[str, Any]) -> None:
        """Append ``record`` with a wall-clock timestamp."""
        if not self.enabled:
            return
        record = {"time": round(time.time(), 3), **record}
        with open(self.path, "a") as handle:
            handle.write(json.dumps(record) + "\n")
        if self.tensorboard is not None:
            self.tensorboard.write(record)

    def close(self) -> None:
        """Flush and close the TensorBoard writer, if any."""
        if self.tensorboard is not None:
            self.tensorboard.close()

    def __enter__(self) -> MetricsLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def require_tensorboard() -> type:
    """``torch.utils.tensorboard.SummaryWriter``; bad input naming the fix when it is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        raise BadInput("train.tensorboard needs tensorboard: pip install 'sslkit[plots]' "
                       "(or --set train.tensorboard=false)") from exc  # fmt: skip
    return SummaryWriter


class TensorBoardScalars:
    """Every numeric key of the metrics records as a TensorBoard scalar in ``log_dir``.

    Step records give ``loss``, ``loss/<term>``, ``lr``, ``images_per_second``, ... at their
    step; epoch records give ``epoch/<key>`` (the epoch means); ``start`` records are skipped.
    """

    BOOKKEEPING = frozenset({"time", "kind", "epoch", "step", "world_size"})

    def __init__(self, log_dir: Path) -> None:
        self.writer = require_tensorboard()(log_dir=str(log_dir))

    def write(self, record: dict[str, Any]) -> None:
        """Add ``record``'s numeric values at ``record["step"]``."""
        kind, step = record.get("kind"), record.get("step")
        if kind == "start" or not isinstance(step, int):
            return
        prefix = "epoch/" if kind == "epoch" else ""
        for key, value in record.items():
            if (key not in self.BOOKKEEPING and isinstance(value, int | float)
                    and not isinstance(value, bool)):  # fmt: skip
                self.writer.add_scalar(prefix + key, value, step, walltime=record.get("time"))

    def close(self) -> None:
        """Flush the events file and close it."""
        self.writer.close()


class TrainingProgress:
    """A rich progress bar: epoch, step, loss terms, lr and images/s (stderr, rank 0)."""

    def __init__(self, enabled: bool, total_steps: int) -> None:
        self.enabled = enabled
        self.progress = Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            disable=not enabled,
        )
        self.task = self.progress.add_task("train", total=total_steps, epoch="-", stats="")

    def __enter__(self) -> TrainingProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def update(self, completed: int, epoch: str, stats: dict[str, float]) -> None:
        """Move the bar to ``completed`` steps and show ``stats``."""
        text = "  ".join(f"{k} {v:.4g}" for k, v in stats.items())
        self.progress.update(self.task, completed=completed, epoch=epoch, stats=text)
