"""Is an output path writable? Checked when the command line is read, before any work."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from sslkit.errors import BadInput
from sslkit.utils.atomic import TMP_MARKER


def check_writable(path: str | os.PathLike[str], folder: bool, option: str) -> None:
    """Bad input (one line naming ``option``) unless ``path`` can be written: a file
    (``folder=False``) or a folder (``folder=True``) that may not exist yet.

    The nearest existing folder on the way must be a folder, and a probe file must be
    creatable (and is removed) in it: this catches a read-only disk, missing permissions
    and a path through a file. Nothing is left behind, not even a created folder.
    """
    path = Path(path).expanduser()
    if folder and path.exists() and not path.is_dir():
        raise BadInput(f"{option} {path} is a file, not a folder: choose a folder")
    if not folder and path.is_dir():
        raise BadInput(f"{option} {path} is a folder: give the name of a file in it")
    existing = path if folder else path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise BadInput(f"cannot write {option} {path}: {existing} is a file, not a folder; "
                       "choose another path")  # fmt: skip
    try:
        handle, probe = tempfile.mkstemp(prefix=TMP_MARKER + "probe-", dir=existing)
        os.close(handle)
        os.unlink(probe)
    except OSError as exc:
        raise BadInput(f"cannot write {option} {path} ({exc.strerror or exc} in {existing}): "
                       "choose a place you can write, or fix its permissions") from exc
