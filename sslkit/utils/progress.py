"""Progress for people and for logs, on stderr.

On a terminal a rich bar shows what is done, the time remaining and the latest values
(loss, lr, ...). Without one (``nohup``, a SLURM or CI log) a plain line is written every
``SSLKIT_PROGRESS_SECONDS`` seconds (default 30) and when the task ends::

    [sslkit] pretrain: epoch 3/10, loss 6.21, lr 0.03, images/s 212,
        120/400 steps (30 %), 4 min 10 s left        (one line)

Every long-running command reports through :class:`Progress`; ``--no-progress`` (or
``no_progress=True`` in Python) turns it off.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, TextIO

SECONDS_ENV = "SSLKIT_PROGRESS_SECONDS"
DEFAULT_SECONDS = 30.0


def log_interval() -> float:
    """Seconds between two log lines: ``$SSLKIT_PROGRESS_SECONDS`` or 30."""
    try:
        return max(0.0, float(os.environ.get(SECONDS_ENV, DEFAULT_SECONDS)))
    except ValueError:
        return DEFAULT_SECONDS


def duration(seconds: float) -> str:
    """``3725`` -> ``"1 h 2 min"``, ``250`` -> ``"4 min 10 s"``, ``7.2`` -> ``"7 s"``."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


class Progress:
    """One task's progress: ``completed`` of ``total`` units, and the latest values.

    Use as a context manager and call :meth:`update`; ``images`` counts images processed
    (for images/s), ``stats`` are shown as ``name value`` (``epoch="3/10", loss=6.2``).
    """

    def __init__(self, description: str, total: int | None, unit: str = "images",
                 enabled: bool = True, *, stream: TextIO | None = None,
                 terminal: bool | None = None, interval: float | None = None) -> None:  # fmt: skip
        self.description, self.total, self.unit = description, total, unit
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.interval = log_interval() if interval is None else interval
        self.completed, self.images = 0, 0
        self.stats: dict[str, Any] = {}
        self._bar = None
        self._terminal = terminal
        self._started = self._last_line = 0.0
        self._first: tuple[float, int] | None = None  # (time, completed) at the first update
        self._written: int | None = None  # ``completed`` at the last line written

    def __enter__(self) -> Progress:
        self._started = self._last_line = time.perf_counter()
        if not self.enabled:
            return self
        terminal = self._terminal
        if terminal is None:
            terminal = bool(getattr(self.stream, "isatty", lambda: False)())
        if terminal:
            self._bar = self._rich_bar()
            self._bar.__enter__()
            self._task = self._bar.add_task(self.description, total=self.total, stats="")
        return self

    def _rich_bar(self):
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import (
            Progress as RichProgress,
        )

        return RichProgress(TextColumn("[bold]{task.description}"), BarColumn(),
                            MofNCompleteColumn(), TextColumn("{task.fields[stats]}"),
                            TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(),
                            console=Console(file=self.stream, force_terminal=True))  # fmt: skip

    def update(self, completed: int | None = None, advance: int = 0, images: int = 0,
               **stats: Any) -> None:  # fmt: skip
        """Set (``completed``) or advance the units done; count ``images``; show ``stats``."""
        self.completed = completed if completed is not None else self.completed + advance
        self.images += images
        self.stats.update(stats)
        if self._first is None:
            self._first = (time.perf_counter(), self.completed)
        if not self.enabled:
            return
        if self._bar is not None:
            text = "  ".join(f"{key} {_value(value)}" for key, value in self.stats.items())
            self._bar.update(self._task, completed=self.completed, stats=text)
            return
        now = time.perf_counter()
        if now - self._last_line >= self.interval:
            self._last_line = now
            self._write(self.line(now))

    def line(self, now: float | None = None) -> str:
        """The plain log line: what is done, the values, images/s and the time left."""
        now = time.perf_counter() if now is None else now
        elapsed = max(now - self._started, 1e-9)
        parts = [f"{key} {_value(value)}" for key, value in self.stats.items()]
        if self.total:
            share = 100.0 * self.completed / self.total
            parts.append(f"{self.completed:,}/{self.total:,} {self.unit} ({share:.0f} %)")
        else:
            parts.append(f"{self.completed:,} {self.unit}")
        if self.images:
            parts.append(f"{self.images / elapsed:,.0f} images/s")
        if self.total and 0 < self.completed < self.total:
            parts.append(f"{duration((self.total - self.completed) / self._rate(now))} left")
        elif self.total and self.completed >= self.total:
            parts.append(f"done in {duration(elapsed)}")
        return f"[sslkit] {self.description}: " + ", ".join(parts)

    def _rate(self, now: float) -> float:
        """Units per second since the first update (a resumed run starts part-way), or
        since the start."""
        if self._first is not None and self.completed > self._first[1] and now > self._first[0]:
            return (self.completed - self._first[1]) / (now - self._first[0])
        return max(self.completed, 1) / max(now - self._started, 1e-9)

    def _write(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()
        self._written = self.completed

    def __exit__(self, kind, value, traceback) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.__exit__(kind, value, traceback)
        elif kind is None and self._written != self.completed:
            self._write(self.line())


class NoProgress(Progress):
    """A :class:`Progress` that shows nothing (``no_progress=True``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__("", None, enabled=False)


def progress(description: str, total: int | None, unit: str = "images",
             enabled: bool = True) -> Progress:  # fmt: skip
    """A :class:`Progress` on stderr (off when ``enabled`` is False)."""
    return Progress(description, total, unit, enabled)
