"""Features written by other tools: HDF5 files with a ``features`` dataset and ``.npy``
arrays are read with unknown provenance; bad shapes and values are one-line bad input; sslkit's
own files keep every check they have."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from sslkit.errors import BadInput
from sslkit.features.store import (
    FeatureSet,
    is_foreign,
    open_any_features,
    read_any_feature_pair,
    read_any_features,
    read_features,
    write_features,
)


def _array(n: int = 6, d: int = 4, dtype=np.float32) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(n, d)).astype(dtype)


def _h5(path, **datasets) -> None:
    """An HDF5 file as another tool writes it: datasets only, no sslkit attributes."""
    with h5py.File(path, "w") as handle:
        for name, value in datasets.items():
            handle.create_dataset(name, data=value)


def test_npy_with_labels_file(tmp_path):
    """A .npy array and a .npy labels file: float32 rows, int64 labels, unknown provenance."""
    features, labels = _array(6, 4, np.float64), np.array([0, 1, 2, 0, 1, 2])
    np.save(tmp_path / "f.npy", features)
    np.save(tmp_path / "y.npy", labels)
    data = read_any_features(tmp_path / "f.npy", tmp_path / "y.npy")
    assert data.features.dtype == np.float32
    assert np.array_equal(data.features, features.astype(np.float32))
    assert data.labels.dtype == np.int64 and data.labels.tolist() == labels.tolist()
    assert data.indices.tolist() == list(range(6))
    assert is_foreign(data) and data.attrs["provenance"] == "unknown"
    assert data.attrs["file_format"] == "npy" and data.attrs["labelled"] is True
    assert data.attrs["labels_file"] == str(tmp_path / "y.npy")


def test_npy_stays_on_disk_and_reads_rows_as_float32(tmp_path):
    """An opened .npy array is read row block by row block, as float32 whatever it stores."""
    np.save(tmp_path / "f.npy", np.arange(12, dtype=np.int16).reshape(4, 3))
    with open_any_features(tmp_path / "f.npy") as data:
        assert not isinstance(data.features, np.ndarray)
        assert data.features.shape == (4, 3) and data.features.dtype == np.float32
        block = data.features[1:3]
        assert block.dtype == np.float32 and block.tolist() == [[3, 4, 5], [6, 7, 8]]


def test_npy_without_labels_is_unlabelled(tmp_path):
    np.save(tmp_path / "f.npy", _array())
    data = read_any_features(tmp_path / "f.npy")
    assert (data.labels == -1).all() and data.attrs["labelled"] is False


def test_hdf5_of_another_tool_with_and_without_labels(tmp_path):
    """'features' (and 'labels') written by plain h5py are read; other datasets are ignored."""
    features = _array(5, 3)
    _h5(tmp_path / "a.h5", features=features, labels=np.array([1, 0, 1, 0, 1]),
        filenames=np.array([b"a", b"b", b"c", b"d", b"e"]))  # fmt: skip
    data = read_any_features(tmp_path / "a.h5")
    assert np.array_equal(data.features, features) and data.labels.tolist() == [1, 0, 1, 0, 1]
    assert data.attrs["file_format"] == "hdf5" and is_foreign(data)
    _h5(tmp_path / "b.h5", features=features.astype(np.float64))
    unlabelled = read_any_features(tmp_path / "b.h5")
    assert (unlabelled.labels == -1).all() and unlabelled.features.dtype == np.float32
    np.save(tmp_path / "y.npy", np.array([2, 2, 1, 1, 0]))
    labelled = read_any_features(tmp_path / "b.h5", tmp_path / "y.npy")
    assert labelled.labels.tolist() == [2, 2, 1, 1, 0]


def test_sslkit_datasets_without_the_format_tag_are_foreign_not_refused(tmp_path):
    """features/labels/indices without sslkit's tag: another tool's file (the strict reader
    the feature cache uses still refuses it)."""
    _h5(tmp_path / "f.h5", features=_array(3, 2), labels=np.zeros(3, np.int64),
        indices=np.arange(3))  # fmt: skip
    assert is_foreign(read_any_features(tmp_path / "f.h5"))
    with pytest.raises(BadInput, match="format tag"):
        read_features(tmp_path / "f.h5")


def test_sslkit_files_read_as_before(tmp_path):
    """An sslkit file read by read_any_features equals read_features, provenance and all."""
    data = FeatureSet(_array(4, 3), np.array([0, 1, 0, 1]), np.arange(10, 14),
                      {"layer": "backbone", "dataset": "digits", "split": "train"})  # fmt: skip
    write_features(tmp_path / "f.h5", data)
    strict, any_ = read_features(tmp_path / "f.h5"), read_any_features(tmp_path / "f.h5")
    assert np.array_equal(strict.features, any_.features)
    assert any_.indices.tolist() == [10, 11, 12, 13] and strict.attrs == any_.attrs
    assert not is_foreign(any_)
    np.save(tmp_path / "y.npy", np.zeros(4, np.int64))
    with pytest.raises(BadInput, match="own labels: drop --labels-file"):
        read_any_features(tmp_path / "f.h5", tmp_path / "y.npy")


def test_sslkit_files_keep_their_checks(tmp_path):
    """A tagged file with a wrong shape is refused as before, not read as a foreign one."""
    with h5py.File(tmp_path / "f.h5", "w") as handle:
        handle["features"] = _array(3, 2)
        handle["labels"] = np.zeros(4)
        handle["indices"] = np.arange(3)
        handle.attrs["format"] = "sslkit.features"
    with pytest.raises(BadInput, match="wrong shape"):
        read_any_features(tmp_path / "f.h5")


NAN_ROWS = _array(6, 4)
NAN_ROWS[[2, 4], 1] = np.nan


@pytest.mark.parametrize(
    ("features", "labels", "message"),
    [
        (np.zeros(5, np.float32), None, r"shape \(5,\): they must be N x D"),
        (np.zeros((2, 3, 4), np.float32), None, r"shape \(2, 3, 4\): they must be N x D"),
        (np.zeros((0, 4), np.float32), None, "no rows or no columns"),
        (np.array([["a", "b"]]), None, "must be numbers"),
        (_array(6, 4), np.zeros(5, np.int64), "has 5 labels but the features .* have 6 rows"),
        (_array(6, 4), np.zeros((6, 1), np.int64), r"shape \(6, 1\): labels must be one"),
        (_array(6, 4), np.full(6, 0.5), "non-integer values"),
        (_array(6, 4), np.full(6, -3), "holds -3"),
        (NAN_ROWS, None, r"2 feature row\(s\) with NaN or infinite values \(the first is row 2\)"),
        (np.full((3, 2), np.inf, np.float32), None, "3 feature row"),
    ],
    ids=["1-d", "3-d", "empty", "strings", "label count", "2-d labels", "float labels",
         "negative labels", "nan rows", "inf rows"],  # fmt: skip
)
@pytest.mark.parametrize("kind", ["npy", "hdf5"])
def test_bad_features_and_labels_are_bad_input(tmp_path, kind, features, labels, message):
    """Bad shapes and values, as .npy arrays or in another tool's HDF5 file."""
    labels_file = None
    if labels is not None:
        labels_file = tmp_path / "y.npy"
        np.save(labels_file, labels)
    if kind == "npy":
        path = tmp_path / "f.npy"
        np.save(path, features)
    else:
        path = tmp_path / "f.h5"
        _h5(path, features=features.astype("S1") if features.dtype.kind == "U" else features)
    with pytest.raises(BadInput, match=message):
        read_any_features(path, labels_file)


def test_hdf5_without_features_and_labels_given_twice(tmp_path):
    _h5(tmp_path / "a.h5", embeddings=_array())
    with pytest.raises(BadInput, match="has no 'features' dataset"):
        read_any_features(tmp_path / "a.h5")
    _h5(tmp_path / "b.h5", features=_array(), labels=np.zeros(6, np.int64))
    np.save(tmp_path / "y.npy", np.zeros(6, np.int64))
    with pytest.raises(BadInput, match="'labels' dataset already: drop --labels-file"):
        read_any_features(tmp_path / "b.h5", tmp_path / "y.npy")


def test_unreadable_files_are_bad_input(tmp_path):
    (tmp_path / "f.npy").write_text("not numpy")
    with pytest.raises(BadInput, match="as a .npy array"):
        read_any_features(tmp_path / "f.npy")
    (tmp_path / "f.h5").write_text("not hdf5")
    with pytest.raises(BadInput, match="cannot read feature file"):
        read_any_features(tmp_path / "f.h5")
    np.save(tmp_path / "ok.npy", _array())
    with pytest.raises(BadInput, match="--labels-file .*missing.npy not found"):
        read_any_features(tmp_path / "ok.npy", tmp_path / "missing.npy")
    with pytest.raises(BadInput, match="not found"):
        read_any_features(tmp_path / "missing.npy")


def test_pair_names_each_split_labels_option(tmp_path):
    """A pair's label mismatch names --train-labels or --test-labels; dimensions must agree."""
    np.save(tmp_path / "a.npy", _array(6, 4))
    np.save(tmp_path / "b.npy", _array(3, 4))
    np.save(tmp_path / "y.npy", np.zeros(6, np.int64))
    with pytest.raises(BadInput, match="--test-labels .*y.npy has 6 labels"):
        read_any_feature_pair(tmp_path / "a.npy", tmp_path / "b.npy", tmp_path / "y.npy",
                              tmp_path / "y.npy")  # fmt: skip
    np.save(tmp_path / "c.npy", _array(3, 5))
    with pytest.raises(BadInput, match="4-d but test features are 5-d"):
        read_any_feature_pair(tmp_path / "a.npy", tmp_path / "c.npy")
