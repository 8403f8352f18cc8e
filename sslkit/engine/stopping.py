"""Graceful stops: a signal becomes "finish this step, write a checkpoint, exit".

SIGTERM (what ``kill`` and SLURM send before they kill), SIGUSR1 and SIGUSR2 (SLURM's
and submitit's warning signals before a preemption or the time limit) and the first
Ctrl-C (SIGINT) only set a flag that the training loop reads after every step; a Ctrl-C
while such a stop is pending (the second Ctrl-C) stops at once (``KeyboardInterrupt``).
The handlers belong to a :class:`StopSignals` the trainer owns for the duration of ``fit``
and are put back as they were afterwards.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

from sslkit.errors import EXIT_STOPPED, TrainingStopped

GRACEFUL_SIGNALS = ("SIGTERM", "SIGUSR1", "SIGUSR2", "SIGINT")
__all__ = ["EXIT_STOPPED", "GRACEFUL_SIGNALS", "StopSignals", "TrainingStopped"]


class StopSignals:
    """While entered, the graceful signals request a stop instead of killing the process.

    ``requested`` is the name of the first signal received (``None`` before one arrives).
    Outside the main thread (where Python cannot install handlers) it does nothing.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.requested: str | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        if not self.enabled or threading.current_thread() is not threading.main_thread():
            return self
        for name in GRACEFUL_SIGNALS:
            number = getattr(signal, name, None)
            if number is not None:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)  # type: ignore[arg-type]
        self._previous.clear()

    def request(self, name: str) -> None:
        """Request a stop as the signal ``name`` would (the first request is kept)."""
        self.requested = self.requested or name

    def _handle(self, number: int, _frame: FrameType | None) -> None:
        name = signal.Signals(number).name
        if name == "SIGINT" and self.requested is not None:
            raise KeyboardInterrupt  # a Ctrl-C while a stop is pending: stop at once
        self.request(name)
