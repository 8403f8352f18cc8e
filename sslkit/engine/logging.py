"""Training metrics: ``metrics.jsonl`` in the workdir and a rich progress bar on stderr."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class MetricsLog:
    """Appends one JSON object per line to ``metrics.jsonl`` (rank 0 only)."""

    def __init__(self, path: Path, enabled: bool) -> None:
        self.path = path
        self.enabled = enabled

    def write(self, record: dict[str, Any]) -> None:
        """Append ``record`` with a wall-clock timestamp."""
        if not self.enabled:
            return
        with open(self.path, "a") as handle:
            handle.write(json.dumps({"time": round(time.time(), 3), **record}) + "\n")


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
