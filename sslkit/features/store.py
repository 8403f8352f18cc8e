"""The HDF5 feature file: ``features`` (N x D), ``labels`` (N), ``indices`` (N) + provenance.

Readable with plain h5py. Attributes record where the features came from: sslkit
version, checkpoint sha256, method, arch, layer, dataset spec and fingerprint, split,
transform, whether rows are L2-normalised, and the creation time.

:func:`open_features` / :func:`read_features` accept sslkit's own files only (the feature
cache relies on that). :func:`open_any_features` / :func:`read_any_features` also take
features written by other tools, for the commands that score or cluster a user's
features: an HDF5 file with a ``features`` dataset (N x D) and optional ``labels`` (N),
or a ``.npy`` array (N x D) with labels from an optional ``.npy`` file. Their provenance
is unknown (``attrs["provenance"] == "unknown"``); sslkit's own files get every check
they always had.
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
#: ``attrs["provenance"]`` of features another tool wrote
UNKNOWN_PROVENANCE = "unknown"
#: rows checked for NaN at a time in a file of another tool (about 64 MiB of float32)
CHECK_BYTES = 64 << 20


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
    ``float32=True`` (features of another tool: float64, integers) converts every read.
    """

    def __init__(self, dataset, path: Path, float32: bool = False) -> None:
        self._dataset = dataset
        self.path = path
        self.shape = tuple(dataset.shape)
        self.ndim = len(self.shape)
        self.float32 = float32
        self.dtype = np.dtype(np.float32) if float32 else dataset.dtype

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows) -> np.ndarray:
        return self.read(rows)

    def read(self, rows, check_finite: bool = True) -> np.ndarray:
        """``rows`` of the file; NaN or infinite values are bad input unless ``check_finite``
        is off (for a check that counts them)."""
        try:
            block = self._dataset[rows]
        except OSError as exc:
            raise BadInput(f"cannot read rows of feature file {self.path} ({exc}): corrupt or "
                           "truncated; re-create it with 'sslkit extract'") from exc  # fmt: skip
        if check_finite and block.dtype.kind == "f" and not np.isfinite(block).all():
            raise BadInput(f"feature file {self.path} holds NaN or infinite values: re-create "
                           "it with 'sslkit extract' from a checkpoint that trained without "
                           "diverging")  # fmt: skip
        return np.asarray(block, dtype=np.float32) if self.float32 else block


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


# -- features written by other tools ------------------------------------------------------


def is_foreign(data: FeatureSet) -> bool:
    """Whether ``data`` came from another tool (its provenance is unknown)."""
    return data.attrs.get("provenance") == UNKNOWN_PROVENANCE


def provenance_note(path: str | Path) -> str:
    """The one-line note that features of another tool carry no provenance."""
    return (f"{path} is not an sslkit feature file: its provenance (checkpoint, dataset, "
            "layer) is unknown and is recorded as such")


@contextmanager
def open_any_features(path: str | Path, labels: str | Path | None = None,
                      labels_option: str = "--labels-file") -> Iterator[FeatureSet]:  # fmt: skip
    """:func:`open_features` for sslkit's files, and features of other tools as well.

    ``path`` is an sslkit feature file (every check of :func:`open_features`), an HDF5
    file with a ``features`` dataset (N x D) and optional ``labels`` (N), or a ``.npy``
    array (N x D). ``labels`` is a ``.npy`` file of N integer labels (-1: unknown) for
    features that have none; ``labels_option`` is the option that gave it, for messages.
    Features of another tool are checked (2-D, numeric, no NaN or infinite rows, N labels),
    read as float32, and their ``attrs`` say ``provenance: unknown``; without labels every
    label is -1.
    """
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"feature file {path} not found: create it with 'sslkit extract', or "
                       "give an HDF5 file with a 'features' dataset or a .npy array")  # fmt: skip
    if path.suffix.lower() == ".npy":
        yield _npy_features(path, labels, labels_option)
        return
    import h5py

    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise BadInput(f"cannot read feature file {path} ({exc}): give an HDF5 file (sslkit's, "
                       "or one with a 'features' dataset) or a .npy array") from exc  # fmt: skip
    with handle:
        if handle.attrs.get("format") == FORMAT_TAG:
            if labels is not None:
                raise BadInput(f"{path} is an sslkit feature file with its own labels: drop "
                               f"{labels_option}")  # fmt: skip
            try:
                data = _validated(handle, path)
            except (OSError, KeyError) as exc:
                raise BadInput(f"cannot read feature file {path} ({exc}): corrupt or "
                               "truncated; re-create it with 'sslkit extract'") from exc
        else:
            try:
                data = _foreign_hdf5(handle, path, labels, labels_option)
            except (OSError, KeyError) as exc:
                raise BadInput(f"cannot read feature file {path} ({exc}): corrupt or "
                               "truncated") from exc  # fmt: skip
        yield data


def read_any_features(path: str | Path, labels: str | Path | None = None,
                      labels_option: str = "--labels-file") -> FeatureSet:  # fmt: skip
    """:func:`open_any_features` read into memory."""
    with open_any_features(path, labels, labels_option) as lazy:
        return FeatureSet(lazy.features[:], lazy.labels, lazy.indices, lazy.attrs)


@contextmanager
def open_any_feature_pair(train_path: str | Path, test_path: str | Path,
                          train_labels: str | Path | None = None,
                          test_labels: str | Path | None = None):  # fmt: skip
    """:func:`open_feature_pair` for any features :func:`open_any_features` reads."""
    with open_any_features(train_path, train_labels, "--train-labels") as train, \
            open_any_features(test_path, test_labels, "--test-labels") as test:
        yield train, test, _pair_sources(train, test, train_path, test_path)


def read_any_feature_pair(train_path: str | Path, test_path: str | Path,
                          train_labels: str | Path | None = None,
                          test_labels: str | Path | None = None):  # fmt: skip
    """:func:`read_feature_pair` for any features :func:`open_any_features` reads."""
    train = read_any_features(train_path, train_labels, "--train-labels")
    test = read_any_features(test_path, test_labels, "--test-labels")
    return train, test, _pair_sources(train, test, train_path, test_path)


def _npy_features(path: Path, labels: str | Path | None, labels_option: str) -> FeatureSet:
    """A ``.npy`` array of features (left on disk, memory-mapped) and its optional labels."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise BadInput(f"cannot read {path} as a .npy array ({exc}): save the features with "
                       "numpy.save") from exc  # fmt: skip
    _check_foreign_shape(path, array)
    rows = _FloatRows(array)
    known = _labels_file(labels, len(array), path, labels_option)
    _check_finite(path, rows)
    return _foreign_set(rows, known, path, "npy", labels)


def _foreign_hdf5(handle, path: Path, labels: str | Path | None,
                  labels_option: str) -> FeatureSet:  # fmt: skip
    """An HDF5 file another tool wrote: ``features`` (N x D) and optional ``labels`` (N)."""
    if "features" not in handle or not hasattr(handle["features"], "shape"):
        raise BadInput(f"{path} is not an sslkit feature file and has no 'features' dataset: "
                       "create it with 'sslkit extract', or store the N x D features as "
                       "'features' (and the N labels as 'labels')")  # fmt: skip
    dataset = handle["features"]
    _check_foreign_shape(path, dataset)
    rows = DiskRows(dataset, path, float32=True)
    if "labels" in handle:
        if labels is not None:
            raise BadInput(f"{path} has a 'labels' dataset already: drop {labels_option}")
        known = _checked_labels(handle["labels"][()], len(rows), f"the 'labels' of {path}")
    else:
        known = _labels_file(labels, len(rows), path, labels_option)
    _check_finite(path, rows)
    return _foreign_set(rows, known, path, "hdf5", labels)


def _check_foreign_shape(path: Path, array) -> None:
    """N x D numbers with N, D > 0, or bad input saying what the file holds."""
    shape = tuple(array.shape)
    if len(shape) != 2:
        raise BadInput(f"{path} holds features of shape {shape}: they must be N x D (one row "
                       "per image); reshape them to 2-D before saving")  # fmt: skip
    if shape[0] == 0 or shape[1] == 0:
        raise BadInput(f"{path} holds features of shape {shape}: no rows or no columns")
    if np.dtype(array.dtype).kind not in "fiu":
        raise BadInput(f"{path} holds {array.dtype} values: features must be numbers (float "
                       "or integer)")  # fmt: skip


class _FloatRows:
    """Rows of an array (a memory-mapped ``.npy``) read as float32 on demand."""

    def __init__(self, array: np.ndarray) -> None:
        self._array = array
        self.shape = tuple(array.shape)
        self.ndim = len(self.shape)
        self.dtype = np.dtype(np.float32)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows) -> np.ndarray:
        # a copy in memory: a memory-mapped block is read-only, which torch warns about
        return np.array(self._array[rows], dtype=np.float32)


def _check_finite(path: Path, rows) -> None:
    """Refuse features with NaN or infinite values, naming the first bad row."""
    step = max(1, CHECK_BYTES // (4 * rows.shape[1]))
    bad, first = 0, None
    for start in range(0, len(rows), step):
        block = slice(start, start + step)
        values = rows.read(block, check_finite=False) if isinstance(rows, DiskRows) else rows[block]
        finite = np.isfinite(values).all(axis=1)
        if not finite.all():
            if first is None:
                first = start + int(np.argmin(finite))
            bad += int((~finite).sum())
    if bad:
        raise BadInput(f"{path} has {bad} feature row(s) with NaN or infinite values (the first "
                       f"is row {first}): drop or fix them")  # fmt: skip


def _labels_file(labels: str | Path | None, count: int, path: Path,
                 labels_option: str) -> np.ndarray:  # fmt: skip
    """The N labels of a ``.npy`` labels file, or N unknown labels (-1) without one."""
    if labels is None:
        return np.full(count, -1, dtype=np.int64)
    labels = Path(labels)
    if not labels.is_file():
        raise BadInput(f"{labels_option} {labels} not found")
    try:
        values = np.load(labels, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise BadInput(f"cannot read {labels_option} {labels} as a .npy array ({exc}): save "
                       "the labels with numpy.save") from exc  # fmt: skip
    return _checked_labels(values, count, f"{labels_option} {labels}", features=path)


def _checked_labels(values: np.ndarray, count: int, what: str,
                    features: Path | None = None) -> np.ndarray:  # fmt: skip
    """N integer labels (-1: unknown) as int64, or bad input saying what is wrong."""
    values = np.asarray(values)
    if values.ndim != 1:
        raise BadInput(f"{what} has shape {values.shape}: labels must be one integer per row "
                       "(shape (N,))")  # fmt: skip
    if len(values) != count:
        rows = f" of {features}" if features is not None else ""
        raise BadInput(f"{what} has {len(values)} labels but the features{rows} have {count} "
                       "rows: give one label per row")  # fmt: skip
    if values.dtype.kind == "f":
        if not np.isfinite(values).all() or not np.array_equal(values, np.round(values)):
            raise BadInput(f"{what} holds non-integer values: labels are class numbers "
                           "0, 1, ... (-1: unknown)")  # fmt: skip
    elif values.dtype.kind not in "iub":
        raise BadInput(f"{what} holds {values.dtype} values: labels are class numbers 0, 1, "
                       "... (-1: unknown)")  # fmt: skip
    values = values.astype(np.int64)
    if len(values) and values.min() < -1:
        raise BadInput(f"{what} holds {int(values.min())}: labels are class numbers 0, 1, ... "
                       "(-1: unknown)")  # fmt: skip
    return values


def _foreign_set(rows, labels: np.ndarray, path: Path, file_format: str,
                 labels_file: str | Path | None) -> FeatureSet:  # fmt: skip
    """The features of another tool, in dataset order, with unknown provenance."""
    attrs = {"provenance": UNKNOWN_PROVENANCE, "file_format": file_format,
             "labels_file": "" if labels_file is None else str(labels_file),
             "labelled": bool((labels >= 0).any())}  # fmt: skip
    return FeatureSet(rows, labels, np.arange(len(labels), dtype=np.int64), attrs)
