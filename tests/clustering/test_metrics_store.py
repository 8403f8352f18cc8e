"""AMI/NMI/purity on hand examples, the clustering HDF5 file, and ``sslkit cluster``."""

from __future__ import annotations

import json
import math

import h5py
import numpy as np
import pytest

from sslkit.clustering.kmeans import KMeansSettings, hierarchical_kmeans
from sslkit.clustering.metrics import cluster_agreement
from sslkit.clustering.store import FORMAT_TAG, read_clusters, write_clusters
from sslkit.errors import BadInput
from sslkit.features.store import FeatureSet, write_features
from tests.conftest import run_cli


def _blobs(n_per: int = 20, centers: int = 3, dim: int = 8, seed: int = 0):
    rng = np.random.default_rng(seed)
    means = 3 * rng.normal(size=(centers, dim))
    points = np.repeat(means, n_per, axis=0) + 0.05 * rng.normal(size=(centers * n_per, dim))
    return points.astype(np.float32), np.repeat(np.arange(centers), n_per)


# -- metrics -------------------------------------------------------------------------------
def test_hand_example_purity_and_nmi():
    """Clusters {a,a,b}, {b,b,b}: purity 5/6 and NMI = MI / mean entropy, by hand."""
    assignments = [0, 0, 0, 1, 1, 1]
    labels = [0, 0, 1, 1, 1, 1]
    mutual = (1 / 3) * math.log(2) - (1 / 6) * math.log(2) + 0.5 * math.log(1.5)
    h_clusters = math.log(2)
    h_labels = -(1 / 3) * math.log(1 / 3) - (2 / 3) * math.log(2 / 3)
    scores = cluster_agreement(np.array(assignments), np.array(labels))
    assert set(scores) == {"ami", "nmi", "purity"}
    assert scores["purity"] == pytest.approx(5 / 6)
    assert scores["nmi"] == pytest.approx(mutual / ((h_clusters + h_labels) / 2), rel=1e-9)
    assert 0 < scores["ami"] < scores["nmi"]  # chance-adjusted


def test_perfect_match_with_arbitrary_ids():
    """Relabelled clusters and non-contiguous class ids still score 1 everywhere."""
    scores = cluster_agreement(np.array([100, 100, 3, 3, 42]), np.array([5, 5, 9, 9, -7]))
    assert scores == pytest.approx({"ami": 1.0, "nmi": 1.0, "purity": 1.0})


def test_independent_clusters():
    """Clusters crossing the classes: NMI 0, purity 1/2, AMI below 0."""
    scores = cluster_agreement(np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1]))
    assert scores["nmi"] == pytest.approx(0.0, abs=1e-12)
    assert scores["purity"] == pytest.approx(0.5)
    assert scores["ami"] < 0


def test_purity_of_singletons_is_one():
    """Every point in its own cluster is pure (purity ignores the number of clusters)."""
    scores = cluster_agreement(np.arange(6), np.array([0, 1, 1, 2, 2, 2]))
    assert scores["purity"] == 1.0 and scores["ami"] < 1.0


# -- store ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def clustering():
    """A three-level hierarchical clustering of 60 points."""
    points, _ = _blobs()
    return hierarchical_kmeans(points, [6, 3, 2], 0.2, KMeansSettings(nredo=1, use_gpu=False))


def test_round_trip(tmp_path, clustering):
    """Every level's arrays, parents (None at the top), flags and indices come back."""
    indices = np.arange(500, 560)
    write_clusters(tmp_path / "c.h5", clustering, indices, {"note": "x", "missing": None})
    back, back_indices = read_clusters(tmp_path / "c.h5")
    assert np.array_equal(back_indices, indices) and back_indices.dtype == np.int64
    assert back.hierarchical is True and back.device == clustering.device
    assert back.sizes == clustering.sizes == [6, 3, 2]
    for ours, theirs in zip(clustering.levels, back.levels, strict=True):
        assert np.array_equal(ours.centroids, theirs.centroids)
        assert theirs.centroids.dtype == np.float32 and theirs.density.dtype == np.float32
        assert np.array_equal(ours.density, theirs.density)
        assert np.array_equal(ours.assignments, theirs.assignments)
        assert theirs.assignments.dtype == np.int64
        if ours.parents is None:
            assert theirs.parents is None
        else:
            assert np.array_equal(ours.parents, theirs.parents)
    with h5py.File(tmp_path / "c.h5", "r") as handle:  # plain h5py layout
        assert handle.attrs["format"] == FORMAT_TAG and handle.attrs["levels"] == 3
        assert handle.attrs["note"] == "x" and handle.attrs["missing"] == ""
        assert "parents" in handle["level_1"] and "parents" not in handle["level_2"]
    assert [p.name for p in tmp_path.iterdir()] == ["c.h5"]  # no temporary file left


def test_feature_file_is_not_a_clustering(tmp_path):
    """A feature file, a non-HDF5 file and a missing path are all BadInput."""
    points, labels = _blobs()
    attrs = {"layer": "x", "dataset": "d", "split": "train"}
    write_features(tmp_path / "f.h5", FeatureSet(points, labels, np.arange(len(points)), attrs))
    with pytest.raises(BadInput, match="not an sslkit clustering file"):
        read_clusters(tmp_path / "f.h5")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5 at all")
    with pytest.raises(BadInput):
        read_clusters(tmp_path / "junk.h5")
    with pytest.raises(BadInput, match="not found"):
        read_clusters(tmp_path / "nowhere.h5")


def test_truncated_clustering_file_is_bad_input(tmp_path, clustering):
    """A clustering file missing a level's dataset is BadInput, not a KeyError."""
    write_clusters(tmp_path / "c.h5", clustering, np.arange(60), {})
    with h5py.File(tmp_path / "c.h5", "a") as handle:
        del handle["level_1/density"]
    with pytest.raises(BadInput, match="corrupt"):
        read_clusters(tmp_path / "c.h5")


# -- CLI -----------------------------------------------------------------------------------
def _feature_file(path, labelled: bool = True):
    points, labels = _blobs()
    labels = labels if labelled else np.full(len(labels), -1)
    attrs = {"layer": "head", "dataset": "toy", "split": "train"}
    write_features(path, FeatureSet(points, labels, np.arange(len(points)) + 7, attrs))
    return path


def test_cli_hierarchical_json(tmp_path):
    """``sslkit cluster --hierarchical`` writes the file and JSON levels with AMI/NMI/purity."""
    features = _feature_file(tmp_path / "f.h5")
    run_cli("cluster", "--features", features, "--clusters", "6,3", "--hierarchical",
            "--nredo", "3",
            "--device", "cpu", "--out", tmp_path / "c.h5",
            "--json", tmp_path / "r.json")  # fmt: skip
    output = json.loads((tmp_path / "r.json").read_text())
    assert output["hierarchical"] is True and output["points"] == 60 and output["dim"] == 8
    assert [row["k"] for row in output["levels"]] == [6, 3]
    for row in output["levels"]:
        assert {"ami", "nmi", "purity", "non_empty"} <= set(row)
        assert 0 <= row["nmi"] <= 100 and 0 < row["purity"] <= 100 and row["ami"] <= 100
    assert output["levels"][0]["purity"] == 100.0  # 6 clusters of 3 blobs never mix them
    assert output["score_unit"] == "percent"
    clustering, indices = read_clusters(tmp_path / "c.h5")
    assert np.array_equal(indices, np.arange(60) + 7)
    top = clustering.levels[1].assignments
    assert np.array_equal(top, clustering.levels[0].parents[clustering.levels[0].assignments])
    with h5py.File(tmp_path / "c.h5", "r") as handle:
        assert handle.attrs["ks"] == "6,3" and handle.attrs["features_dataset"] == "toy"


def test_cli_unlabelled_features_have_no_scores(tmp_path):
    """Without labels the JSON levels carry no AMI/NMI/purity."""
    features = _feature_file(tmp_path / "f.h5", labelled=False)
    run_cli("cluster", "--features", features, "--clusters", "4", "--device", "cpu",
            "--out", tmp_path / "c.h5", "--json", tmp_path / "r.json")  # fmt: skip
    levels = json.loads((tmp_path / "r.json").read_text())["levels"]
    assert len(levels) == 1 and "ami" not in levels[0] and levels[0]["k"] == 4


@pytest.mark.parametrize("extra", [["--clusters", "61"], ["--clusters", "4,8", "--hierarchical"]])
def test_cli_bad_k_is_one_line_exit_2(tmp_path, extra):
    """k > N (or growing levels) exits 2 with one error line; no clustering or JSON file."""
    features = _feature_file(tmp_path / "f.h5")
    result = run_cli("cluster", "--features", features, *extra, "--device", "cpu",
                     "--out", tmp_path / "c.h5", "--json", tmp_path / "r.json",
                     expect=2)  # fmt: skip
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert not (tmp_path / "c.h5").exists() and not (tmp_path / "r.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.h5"]


def test_cli_missing_feature_file(tmp_path):
    """A missing feature file exits 2 and writes nothing."""
    result = run_cli("cluster", "--features", tmp_path / "nope.h5", "--clusters", "2",
                     "--out", tmp_path / "c.h5", expect=2)  # fmt: skip
    assert "not found" in result.output and not (tmp_path / "c.h5").exists()


def test_cli_max_train_points_samples_training_and_assigns_every_point(tmp_path):
    """``--max-train-points 12`` trains on 12 of the 60 points, still assigns all 60 (3 blobs
    are still found, best of 5 restarts) and records the setting in the file and the JSON."""
    features = _feature_file(tmp_path / "f.h5")
    run_cli("cluster", "--features", features, "--clusters", "3", "--max-train-points", "12",
            "--nredo", "5", "--device", "cpu", "--out", tmp_path / "c.h5",
            "--json", tmp_path / "r.json")  # fmt: skip
    output = json.loads((tmp_path / "r.json").read_text())
    assert output["max_train_points"] == 12 and output["points"] == 60
    assert output["levels"][0]["purity"] == 100.0
    clustering, _ = read_clusters(tmp_path / "c.h5")
    assert len(clustering.levels[0].assignments) == 60
    with h5py.File(tmp_path / "c.h5", "r") as handle:
        assert handle.attrs["max_train_points"] == 12
