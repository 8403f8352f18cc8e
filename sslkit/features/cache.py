"""A cache of feature files keyed by their provenance.

The key covers the checkpoint's sha256, the dataset fingerprint (files' paths, sizes and
mtimes, or the embedded data), the split, the layer and the transform: changing any of
them gives a new key. Files are written atomically (temp file, then rename), and a run
holds an exclusive lock on ``<key>.lock`` while it checks and fills an entry: two runs
asking for the same features at once compute them once, the second waits and reads the
first one's file. A truncated or foreign file found in the cache is removed and rebuilt.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from sslkit.errors import BadInput
from sslkit.features.store import FeatureSet, read_features, write_features
from sslkit.utils.atomic import atomic_path

CACHE_VERSION = 1


def default_cache_dir() -> Path:
    """``$SSLKIT_CACHE`` or ``~/.cache/sslkit``, with a ``features`` sub-folder."""
    root = os.environ.get("SSLKIT_CACHE") or Path.home() / ".cache" / "sslkit"
    return Path(root) / "features"


def cache_key(provenance: dict[str, Any]) -> str:
    """A stable hash of the provenance fields that determine the features."""
    fields = {k: provenance[k] for k in sorted(provenance)}
    text = json.dumps({"cache_version": CACHE_VERSION, **fields}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def cached_features(
    cache_dir: Path, provenance: dict[str, Any], compute: Callable[[], FeatureSet]
) -> tuple[FeatureSet, bool, Path]:
    """The features for ``provenance``: from the cache if valid, else computed and stored.

    Returns ``(features, hit, path)``.
    """
    path = Path(cache_dir) / f"{cache_key(provenance)}.h5"
    with entry_lock(path):
        if path.is_file():
            try:
                stored = read_features(path)
                if all(_attr_text(stored.attrs.get(k)) == _attr_text(v)
                       for k, v in provenance.items()):  # fmt: skip
                    return stored, True, path
            except BadInput:
                pass  # truncated or foreign: rebuild below
            path.unlink(missing_ok=True)
        features = compute()
        write_features(path, features)
    return features, False, path


@contextlib.contextmanager
def entry_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` + ``.lock`` (``flock``; a no-op where there is none).

    The lock is released when the process dies, so a killed run never blocks the next one;
    the empty ``.lock`` files are left in place (removing them would race with waiters).
    """
    try:
        import fcntl
    except ImportError:  # Windows: atomic renames alone keep files whole
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _attr_text(value: Any) -> str:
    """A provenance value as stored in HDF5 (where ``None`` is written as ``""``)."""
    return "" if value is None else str(value)


def cached_neighbours(
    cache_dir: Path,
    train_file: Path,
    test_file: Path,
    k: int,
    compute: Callable[[int], tuple[np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Every test row's ``k`` nearest train rows, from the cache when stored for ``k`` or more.

    ``train_file`` / ``test_file`` are cached feature files, whose names are the hashes of
    their provenance, so the pair names the search exactly. A stored search of K >= ``k``
    neighbours answers any ``k`` (and any vote temperature): sweeping ``--k`` or
    ``--temperature`` then costs no similarity product. ``compute(k)`` returns
    ``(similarities, indices)``, each ``n_test x k``. Returns those and whether it was a hit.
    """
    pair = f"{Path(train_file).stem}:{Path(test_file).stem}"
    path = Path(cache_dir) / f"neighbours-{hashlib.sha256(pair.encode()).hexdigest()[:32]}.h5"
    with entry_lock(path):
        return _neighbours_locked(path, pair, k, compute)


def _neighbours_locked(path: Path, pair: str, k: int,
                       compute: Callable[[int], tuple[np.ndarray, np.ndarray]]):  # fmt: skip
    """:func:`cached_neighbours` with the entry's lock held."""
    import h5py

    if path.is_file():
        try:
            with h5py.File(path, "r") as handle:
                if handle.attrs.get("pair") == pair and handle["indices"].shape[1] >= k:
                    return handle["similarities"][:, :k], handle["indices"][:, :k], True
        except (OSError, KeyError):
            pass  # truncated or foreign: rebuild below
        path.unlink(missing_ok=True)
    similarities, indices = compute(k)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as handle:
        handle.create_dataset("similarities", data=np.asarray(similarities, dtype=np.float32))
        handle.create_dataset("indices", data=np.asarray(indices, dtype=np.int64))
        handle.attrs["pair"] = pair
        handle.attrs["cache_version"] = CACHE_VERSION
    return similarities, indices, False
