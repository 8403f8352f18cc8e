"""A cache of feature files keyed by their provenance.

The key covers the checkpoint's sha256, the dataset fingerprint (files' paths, sizes and
mtimes, or the embedded data), the split, the layer and the transform: changing any of
them gives a new key. Files are written atomically, so two runs asking for the same
features at once each write a complete file and the last rename wins; a truncated or
foreign file found in the cache is removed and rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sslkit.errors import BadInput
from sslkit.features.store import FeatureSet, read_features, write_features

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


def _attr_text(value: Any) -> str:
    """A provenance value as stored in HDF5 (where ``None`` is written as ``""``)."""
    return "" if value is None else str(value)
