"""The HDF5 feature file: ``features`` (N x D), ``labels`` (N), ``indices`` (N) + provenance.

Readable with plain h5py. Attributes record where the features came from: sslkit
version, checkpoint sha256, method, arch, layer, dataset spec and fingerprint, split,
transform, whether rows are L2-normalised, and the creation time.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sslkit import __version__
from sslkit.errors import BadInput
from sslkit.utils.atomic import atomic_path

FORMAT_TAG = "sslkit.features"
REQUIRED_ATTRS = ("format", "sslkit_version", "layer", "dataset", "split")


@dataclass
class FeatureSet:
    """Features read from (or to be written to) a feature file."""

    features: np.ndarray  # N x D float32 / float16 (an h5py dataset from open_features)
    labels: np.ndarray  # N int64, -1 when unknown
    indices: np.ndarray  # N int64, dataset order
    attrs: dict[str, Any]

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def dim(self) -> int:
        """Feature dimension D."""
        return int(self.features.shape[1])


def write_features(path: str | Path, data: FeatureSet, half: bool = False) -> None:
    """Write a feature file atomically (chunked datasets, temp file then rename)."""
    features = np.asarray(data.features, dtype=np.float16 if half else np.float32)
    if features.ndim != 2 or not len(features) == len(data.labels) == len(data.indices):
        raise ValueError("features must be N x D with N labels and N indices")
    with FeatureWriter(path, data.labels, data.indices, data.attrs, half) as writer:
        writer.write(0, features)


def chunk_rows(dim: int, itemsize: int) -> int:
    """Rows of an HDF5 chunk of about 1 MiB for ``dim``-wide rows."""
    return max(1, (1 << 20) // max(1, dim * itemsize))


class FeatureWriter:
    """Writes a feature file block by block, so N x D never has to be in memory at once.

    ``with FeatureWriter(path, labels, indices, attrs) as writer: writer.write(row, block)``
    for consecutive or scattered row blocks; the file appears at ``path`` (atomic rename)
    only when the block exits normally and every row was written.
    """

    def __init__(self, path: str | Path, labels: np.ndarray, indices: np.ndarray,
                 attrs: dict[str, Any], half: bool = False) -> None:  # fmt: skip
        if len(labels) != len(indices):
            raise ValueError("labels and indices must have the same length")
        self.path = Path(path)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.indices = np.asarray(indices, dtype=np.int64)
        self.attrs = {
            "format": FORMAT_TAG,
            "sslkit_version": __version__,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            **attrs,
        }
        self.dtype = np.float16 if half else np.float32
        self.rows_written = 0
        self._handle = None
        self._features = None
        self._dim = 0

    def __enter__(self) -> FeatureWriter:
        import h5py

        self._atomic = atomic_path(self.path)
        tmp = self._atomic.__enter__()
        self._handle = h5py.File(tmp, "w")
        self._handle.create_dataset("labels", data=self.labels)
        self._handle.create_dataset("indices", data=self.indices)
        for key, value in self.attrs.items():
            self._handle.attrs[key] = "" if value is None else value
        return self

    @property
    def dim(self) -> int:
        """Feature dimension D (0 before the first block)."""
        return self._dim

    def write(self, start: int, block: np.ndarray) -> None:
        """Store ``block`` (rows x D) as rows ``start ..`` of the features."""
        block = np.asarray(block, dtype=self.dtype)
        if self._features is None:
            dim = self._dim = int(block.shape[1])
            rows = max(1, min(len(self.labels), chunk_rows(dim, block.itemsize)))
            self._features = self._handle.create_dataset(
                "features", shape=(len(self.labels), dim), dtype=self.dtype, chunks=(rows, dim))
        if start < 0 or start + len(block) > len(self.labels):
            raise ValueError(f"rows {start}..{start + len(block)} are outside "
                             f"0..{len(self.labels)}")  # fmt: skip
        self._features[start : start + len(block)] = block
        self.rows_written += len(block)

    def __exit__(self, kind, value, traceback) -> None:
        self._handle.close()
        if kind is None and self.rows_written != len(self.labels):
            error = ValueError(f"wrote {self.rows_written} feature rows of {len(self.labels)}")
            self._atomic.__exit__(ValueError, error, None)  # removes the temporary file
            raise error
        self._atomic.__exit__(kind, value, traceback)  # rename, or remove on an exception


def read_features(path: str | Path) -> FeatureSet:
    """Read and validate a feature file; a foreign, truncated or malformed file is bad input."""
    with open_features(path) as lazy:
        return FeatureSet(lazy.features[:], lazy.labels, lazy.indices, lazy.attrs)


@contextmanager
def open_features(path: str | Path) -> Iterator[FeatureSet]:
    """A validated feature file whose ``features`` stay on disk while the block is open.

    ``features`` is the h5py dataset: ``features[a:b]`` reads only those rows (in HDF5
    chunks of about 1 MiB), so kNN and k-means can stream an N x D file that does not fit
    in memory. Labels, indices and attributes are read at once (N integers).
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise BadInput(f"feature file {path} not found: create it with 'sslkit extract'")
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise BadInput(f"cannot read feature file {path} ({exc}): corrupt or not HDF5") from exc
    with handle:
        try:
            data = _validated(handle, path)
        except (OSError, KeyError) as exc:
            raise BadInput(f"cannot read feature file {path} ({exc}): corrupt or truncated; "
                           "re-create it with 'sslkit extract'") from exc  # fmt: skip
        yield data


def _validated(handle, path: Path) -> FeatureSet:
    """The file's labels, indices, attributes and (lazy) features, or a BadInput."""
    missing = [name for name in ("features", "labels", "indices") if name not in handle]
    if missing or handle.attrs.get("format") != FORMAT_TAG:
        what = ", ".join(missing) or "format tag"
        raise BadInput(f"{path} is not an sslkit feature file (missing {what}): "
                       "create it with 'sslkit extract'")  # fmt: skip
    features = DiskRows(handle["features"], path)
    labels = handle["labels"][()]
    indices = handle["indices"][()]
    attrs = {k: _plain(v) for k, v in handle.attrs.items()}
    if (features.ndim != 2 or labels.ndim != 1 or indices.ndim != 1
            or not len(features) == len(labels) == len(indices)):  # fmt: skip
        raise BadInput(
            f"feature file {path} has the wrong shape: features {features.shape}, "
            f"labels {labels.shape}, indices {indices.shape}; "
            "re-create it with 'sslkit extract'"
        )
    if len(features) == 0 or features.shape[1] == 0:
        raise BadInput(f"feature file {path} holds no features ({features.shape[0]} x "
                       f"{features.shape[1]}): extract a non-empty split")  # fmt: skip
    kinds = {"features": (features.dtype, "f"), "labels": (labels.dtype, "iu"),
             "indices": (indices.dtype, "iu")}  # fmt: skip
    for name, (dtype, allowed) in kinds.items():
        if dtype.kind not in allowed and not (name == "features" and dtype.kind in "iu"):
            raise BadInput(f"feature file {path} has {name} of type {dtype}, not "
                           f"{'numbers' if name == 'features' else 'integers'}: re-create it "
                           "with 'sslkit extract'")  # fmt: skip
    return FeatureSet(features, labels.astype(np.int64), indices.astype(np.int64), attrs)


class DiskRows:
    """Rows of an open feature file's ``features``, read on demand (``rows[a:b]``).

    Shaped like the array it stands for (``shape``, ``ndim``, ``dtype``, ``len``); a read
    that fails (a file truncated or changed under us) is bad input naming the file.
    """

    def __init__(self, dataset, path: Path) -> None:
        self._dataset = dataset
        self.path = path
        self.shape = tuple(dataset.shape)
        self.ndim = len(self.shape)
        self.dtype = dataset.dtype

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows) -> np.ndarray:
        try:
            values = self._dataset[rows]
        except OSError as exc:
            raise BadInput(f"cannot read rows of feature file {self.path} ({exc}): corrupt or "
                           "truncated; re-create it with 'sslkit extract'") from exc  # fmt: skip
        if values.dtype.kind == "f" and not np.isfinite(values).all():
            raise BadInput(f"feature file {self.path} holds NaN or infinite values: re-create "
                           "it with 'sslkit extract' from a checkpoint that trained without "
                           "diverging")  # fmt: skip
        return values


def _plain(value: Any) -> Any:
    """h5py attribute values -> plain Python types for JSON."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def read_feature_pair(train_path: str | Path, test_path: str | Path):
    """A training and a test feature file of the same dimension, and where they came from.

    Returns ``(train, test, sources)``; ``sources`` holds each file's path and attributes
    for JSON results.
    """
    train, test = read_features(train_path), read_features(test_path)
    return train, test, _pair_sources(train, test, train_path, test_path)


@contextmanager
def open_feature_pair(train_path: str | Path, test_path: str | Path):
    """:func:`read_feature_pair` with both files' features left on disk (:func:`open_features`)."""
    with open_features(train_path) as train, open_features(test_path) as test:
        yield train, test, _pair_sources(train, test, train_path, test_path)


def _pair_sources(train: FeatureSet, test: FeatureSet, train_path, test_path) -> dict:
    if train.dim != test.dim:
        raise BadInput(f"train features are {train.dim}-d but test features are {test.dim}-d: "
                       "extract both with the same checkpoint and layer")  # fmt: skip
    return {"train": {"path": str(train_path), **train.attrs},
            "test": {"path": str(test_path), **test.attrs}}  # fmt: skip
