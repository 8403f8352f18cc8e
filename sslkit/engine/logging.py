"""Training metrics: ``metrics.jsonl`` in the workdir (and optionally TensorBoard scalars),
and the progress of training on stderr."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from sslkit.errors import BadInput
from sslkit.utils.atomic import atomic_path
from sslkit.utils.progress import Progress


def forget_steps_after(path: Path, step: int) -> int:
    """Drop the records of ``metrics.jsonl`` past ``step`` (and a line cut by a kill), so a
    resumed run never logs a step twice; rewritten atomically. Returns how many went."""
    if not path.is_file():
        return 0
    kept, dropped = [], 0
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            dropped += 1  # a line the killed run was writing
            continue
        if isinstance(record, dict) and int(record.get("step", 0)) > step:
            dropped += 1
            continue
        kept.append(line)
    if dropped:
        with atomic_path(path) as tmp:
            tmp.write_text("".join(line + "\n" for line in kept))
    return dropped


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
    """Training progress on stderr (rank 0): a rich bar with the time remaining on a
    terminal, else a log line every few seconds (epoch, step, loss, lr, images/s, time
    left); see :mod:`sslkit.utils.progress`."""

    def __init__(self, enabled: bool, total_steps: int) -> None:
        self.progress = Progress("pretrain", total_steps, unit="steps", enabled=enabled)

    def __enter__(self) -> TrainingProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def update(self, completed: int, epoch: str, stats: dict[str, float]) -> None:
        """Move to ``completed`` steps and show the epoch and ``stats`` (``img/s`` shown as
        images/s)."""
        shown = {("images/s" if key == "img/s" else key): value for key, value in stats.items()}
        self.progress.update(completed, epoch=epoch, **shown)
