"""Atomic file writes: write to a temporary name in the same folder, then rename."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

TMP_MARKER = ".sslkit-tmp-"


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; rename it to ``target`` on success.

    On any exception the temporary file is removed and ``target`` is left untouched, so a
    killed or failed command never leaves a half-written output behind. The file gets the
    permissions the user's umask gives a new file (as ``open(path, "w")`` would), not
    ``mkstemp``'s 0600: a colleague on shared storage can read what the umask lets them.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = _new_file(target.parent, TMP_MARKER + target.name + ".")
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def _new_file(folder: Path, prefix: str) -> Path:
    """Create an empty file ``folder/prefix<random>`` with mode 0666 & ~umask; its path."""
    for _ in range(100):
        path = folder / f"{prefix}{secrets.token_hex(4)}"
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"no free temporary name for {prefix}* in {folder}")


def make_executable(path: str | os.PathLike[str]) -> None:
    """Add execute permission wherever ``path`` is readable (``chmod +x`` under the umask)."""
    mode = os.stat(path).st_mode
    os.chmod(path, mode | ((mode & 0o444) >> 2))


def remove_stale_temp_files(folder: str | os.PathLike[str]) -> int:
    """Delete temporary files left by killed sslkit writes in ``folder``; return how many."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    removed = 0
    for path in folder.glob(TMP_MARKER + "*"):
        with contextlib.suppress(OSError):
            path.unlink()
            removed += 1
    return removed


def sha256_file(path: str | os.PathLike[str], block_size: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(block_size):
            digest.update(chunk)
    return digest.hexdigest()
