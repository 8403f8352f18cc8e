"""One writer per workdir: an exclusive ``flock`` on ``WORKDIR/.sslkit-lock``.

A second ``pretrain`` on a workdir that a running one holds is refused with one line
naming the holder's process id. ``flock`` locks die with their process, so a killed run
(even by SIGKILL) never blocks the next one. Taking the lock is also the first write into
the workdir, so an unwritable workdir is found before any work.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from sslkit.errors import BadInput

LOCK_NAME = ".sslkit-lock"


class WorkdirLock:
    """Hold ``workdir``'s lock while entered (``enabled=False``: other ranks, a no-op)."""

    def __init__(self, workdir: Path, enabled: bool = True) -> None:
        self.path = Path(workdir) / LOCK_NAME
        self.enabled = enabled
        self._handle = None

    def __enter__(self) -> WorkdirLock:
        if not self.enabled:
            return self
        try:
            import fcntl
        except ImportError:  # no flock on this platform: one writer is the user's care
            return self
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(self.path, "a+")  # noqa: SIM115 - held until __exit__
        except OSError as exc:
            raise BadInput(f"cannot write to the workdir {self.path.parent} "
                           f"({exc.strerror or exc}): choose a folder you can write "
                           "with --workdir") from exc  # fmt: skip
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise BadInput(f"{self.path.parent} is in use by another sslkit run ({holder}): "
                           "wait for it to end or stop it, or choose another "
                           "--workdir") from exc  # fmt: skip
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}\n")
        handle.flush()
        self._handle = handle
        return self

    def __exit__(self, *exc) -> None:
        if self._handle is not None:
            with contextlib.suppress(OSError):
                self._handle.close()  # closing releases the lock
            self._handle = None

    def held(self) -> bool:
        """True while this object holds the lock."""
        return self._handle is not None
