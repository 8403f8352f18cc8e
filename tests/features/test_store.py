"""The HDF5 feature store: round trips, plain-h5py layout, atomic writes, bad files."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from sslkit import __version__
from sslkit.errors import BadInput
from sslkit.features.store import (
    FORMAT_TAG,
    FeatureSet,
    FeatureWriter,
    read_features,
    write_features,
)
from sslkit.utils.atomic import TMP_MARKER, atomic_path

ATTRS = {"layer": "backbone", "dataset": "digits", "split": "train", "method": "moco",
         "normalized": True, "temperature": 0.2, "epochs": 3}  # fmt: skip


def _features(n: int = 7, d: int = 5) -> FeatureSet:
    rng = np.random.default_rng(0)
    return FeatureSet(rng.normal(size=(n, d)).astype(np.float32), rng.integers(0, 3, size=n),
                      np.arange(100, 100 + n), dict(ATTRS))  # fmt: skip


def _write_raw(path, **datasets) -> None:
    with h5py.File(path, "w") as handle:
        for name, value in datasets.items():
            handle.create_dataset(name, data=value)
        handle.attrs["format"] = FORMAT_TAG


def test_round_trip_float32(tmp_path):
    """Features, labels, indices and attributes come back unchanged."""
    data = _features()
    write_features(tmp_path / "f.h5", data)
    back = read_features(tmp_path / "f.h5")
    assert back.features.dtype == np.float32
    assert np.array_equal(back.features, data.features)
    assert np.array_equal(back.labels, data.labels) and back.labels.dtype == np.int64
    assert np.array_equal(back.indices, data.indices) and back.indices.dtype == np.int64
    assert len(back) == 7 and back.dim == 5
    for key, value in ATTRS.items():
        assert back.attrs[key] == value and type(back.attrs[key]) is type(value)
    assert back.attrs["format"] == FORMAT_TAG
    assert back.attrs["sslkit_version"] == __version__
    assert "created" in back.attrs


def test_round_trip_half(tmp_path):
    """half=True stores float16 values equal to the rounded input."""
    data = _features()
    write_features(tmp_path / "f.h5", data, half=True)
    back = read_features(tmp_path / "f.h5")
    assert back.features.dtype == np.float16
    assert np.array_equal(back.features, data.features.astype(np.float16))


def test_none_attribute_is_stored_as_empty_string(tmp_path):
    """None cannot be an HDF5 attribute: it is written as ''."""
    data = _features()
    data.attrs["checkpoint_format"] = None
    write_features(tmp_path / "f.h5", data)
    assert read_features(tmp_path / "f.h5").attrs["checkpoint_format"] == ""


def test_readable_with_plain_h5py(tmp_path):
    """The file holds datasets features/labels/indices and string attributes for any reader."""
    data = _features()
    write_features(tmp_path / "f.h5", data)
    with h5py.File(tmp_path / "f.h5", "r") as handle:
        assert set(handle) == {"features", "labels", "indices"}
        assert handle["features"].shape == (7, 5) and handle["features"].dtype == np.float32
        assert np.array_equal(handle["labels"][()], data.labels)
        assert np.array_equal(handle["indices"][()], data.indices)
        assert handle.attrs["format"] == FORMAT_TAG
        assert handle.attrs["dataset"] == "digits"


def test_atomic_path_failure_leaves_nothing(tmp_path):
    """An exception inside atomic_path leaves no target and no temporary file."""
    target = tmp_path / "out" / "f.h5"
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_path(target) as tmp:
            assert tmp.parent == target.parent and tmp.name.startswith(TMP_MARKER)
            tmp.write_bytes(b"half written")
            raise RuntimeError("boom")
    assert not target.exists()
    assert list(target.parent.iterdir()) == []


def test_atomic_path_failure_keeps_old_target(tmp_path):
    """A failed rewrite leaves the previous file untouched."""
    target = tmp_path / "f.txt"
    target.write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.write_text("new")
            raise KeyboardInterrupt
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_atomic_path_success_renames(tmp_path):
    """On success the temporary file becomes the target and nothing else remains."""
    target = tmp_path / "f.txt"
    with atomic_path(target) as tmp:
        tmp.write_text("done")
    assert target.read_text() == "done"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_failed_write_features_leaves_nothing(tmp_path):
    """An attribute HDF5 cannot store fails the write without leaving any file."""
    data = _features()
    data.attrs["bad"] = {"nested": "dict"}
    with pytest.raises(TypeError):
        write_features(tmp_path / "f.h5", data)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9, 0.99])
def test_truncated_file_is_bad_input(tmp_path, fraction):
    """A feature file cut short (an interrupted copy) is bad input."""
    write_features(tmp_path / "f.h5", _features(200, 16))
    raw = (tmp_path / "f.h5").read_bytes()
    (tmp_path / "cut.h5").write_bytes(raw[: int(len(raw) * fraction)])
    with pytest.raises(BadInput, match="corrupt or not HDF5"):
        read_features(tmp_path / "cut.h5")


def test_not_hdf5_is_bad_input(tmp_path):
    """A text file with an .h5 name is bad input."""
    (tmp_path / "f.h5").write_text("features,labels\n1,2\n")
    with pytest.raises(BadInput, match="not HDF5"):
        read_features(tmp_path / "f.h5")


def test_missing_file_is_bad_input(tmp_path):
    """A path that does not exist is bad input naming the file."""
    with pytest.raises(BadInput, match="not found"):
        read_features(tmp_path / "missing.h5")


def test_foreign_hdf5_is_bad_input(tmp_path):
    """An HDF5 file with other datasets is bad input naming what is missing."""
    with h5py.File(tmp_path / "f.h5", "w") as handle:
        handle.create_dataset("embeddings", data=np.zeros((3, 2)))
    with pytest.raises(BadInput, match="missing features, labels, indices"):
        read_features(tmp_path / "f.h5")


def test_missing_format_tag_is_bad_input(tmp_path):
    """The right datasets without the sslkit format tag are still foreign."""
    with h5py.File(tmp_path / "f.h5", "w") as handle:
        handle.create_dataset("features", data=np.zeros((3, 2), dtype=np.float32))
        handle.create_dataset("labels", data=np.zeros(3, dtype=np.int64))
        handle.create_dataset("indices", data=np.arange(3))
    with pytest.raises(BadInput, match="format tag"):
        read_features(tmp_path / "f.h5")


@pytest.mark.parametrize(
    "datasets",
    [
        {"features": np.zeros(3, np.float32), "labels": np.zeros(3), "indices": np.arange(3)},
        {"features": np.zeros((3, 2), np.float32), "labels": np.zeros(4), "indices": np.arange(3)},
        {"features": np.zeros((3, 2), np.float32), "labels": np.zeros((3, 1)), "indices": [0]},
    ],
    ids=["1-d features", "label count", "2-d labels"],
)
def test_wrong_shape_is_bad_input(tmp_path, datasets):
    """Malformed datasets in a tagged file are bad input."""
    _write_raw(tmp_path / "f.h5", **datasets)
    with pytest.raises(BadInput, match="wrong shape"):
        read_features(tmp_path / "f.h5")


def test_empty_file_is_bad_input(tmp_path):
    """A feature file with zero rows is bad input."""
    _write_raw(tmp_path / "f.h5", features=np.zeros((0, 4), np.float32),
               labels=np.zeros(0), indices=np.zeros(0))  # fmt: skip
    with pytest.raises(BadInput, match="no features"):
        read_features(tmp_path / "f.h5")


def test_index_count_mismatch_is_bad_input(tmp_path):
    """Indices of another length than the features are bad input."""
    _write_raw(tmp_path / "f.h5", features=np.zeros((3, 2), np.float32),
               labels=np.zeros(3), indices=np.arange(2))  # fmt: skip
    with pytest.raises(BadInput):
        read_features(tmp_path / "f.h5")




@pytest.mark.parametrize(
    ("labels", "indices"),
    [(5, 5), (3, 5), (5, 3)],
    ids=["labels+indices", "indices only", "labels only"],
)
def test_write_rejects_mismatched_lengths(tmp_path, labels, indices):
    """write_features refuses N features with a different number of labels or indices."""
    data = _features(3)
    data.labels, data.indices = np.zeros(labels, np.int64), np.arange(indices)
    with pytest.raises(ValueError, match="N labels and N indices"):
        write_features(tmp_path / "f.h5", data)
    assert list(tmp_path.iterdir()) == []


def test_block_writer_matches_one_shot_write(tmp_path):
    """Blocks written out of order give the same file contents as write_features."""
    data = _features(n=10)
    with FeatureWriter(tmp_path / "blocks.h5", data.labels, data.indices, data.attrs) as writer:
        assert not (tmp_path / "blocks.h5").exists()  # only the temporary file so far
        writer.write(6, data.features[6:])
        writer.write(0, data.features[:6])
    write_features(tmp_path / "whole.h5", data)
    blocks, whole = read_features(tmp_path / "blocks.h5"), read_features(tmp_path / "whole.h5")
    np.testing.assert_array_equal(blocks.features, whole.features)
    np.testing.assert_array_equal(blocks.indices, whole.indices)
    assert writer.dim == 5


def test_block_writer_missing_rows_or_error_leaves_nothing(tmp_path):
    """An incomplete or failed write never shows a file at the target (nor a temp file)."""
    data = _features(n=10)
    with pytest.raises(ValueError, match="wrote 6 feature rows of 10"):
        with FeatureWriter(tmp_path / "f.h5", data.labels, data.indices, data.attrs) as writer:
            writer.write(0, data.features[:6])
    with pytest.raises(KeyboardInterrupt):
        with FeatureWriter(tmp_path / "f.h5", data.labels, data.indices, data.attrs) as writer:
            writer.write(0, data.features[:6])
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
