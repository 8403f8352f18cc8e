"""cluster, knn and linear on features from other tools (.npy arrays, plain-h5py HDF5 files):
the same scores as the same numbers in an sslkit feature file, a note that their provenance
is unknown, labels where the protocol needs them, one-line errors for bad shapes."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

import sslkit
from sslkit.features.store import FeatureSet, write_features
from tests.conftest import run_cli

PROVENANCE_NOTE = "is not an sslkit feature file: its provenance"


def _blobs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Three labelled Gaussian blobs in 8 dimensions."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    centres = np.random.default_rng(99).normal(size=(3, 8)) * 3
    return (centres[labels] + rng.normal(size=(n, 8))).astype(np.float32), labels


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """The same train (90) and test (30) features as .npy, plain HDF5 and sslkit files."""
    folder = tmp_path_factory.mktemp("foreign")
    found = {}
    for split, n, seed in (("train", 90, 0), ("test", 30, 1)):
        features, labels = _blobs(n, seed)
        np.save(folder / f"{split}.npy", features)
        np.save(folder / f"{split}-labels.npy", labels)
        with h5py.File(folder / f"{split}-tool.h5", "w") as handle:
            handle["features"], handle["labels"] = features, labels
        with h5py.File(folder / f"{split}-nolabels.h5", "w") as handle:
            handle["features"] = features
        write_features(folder / f"{split}-sslkit.h5",
                       FeatureSet(features, labels, np.arange(n),
                                  {"layer": "backbone", "dataset": "blobs", "split": split}))
        found |= {f"{split}.npy": folder / f"{split}.npy",
                  f"{split}-labels.npy": folder / f"{split}-labels.npy",
                  f"{split}-tool.h5": folder / f"{split}-tool.h5",
                  f"{split}-nolabels.h5": folder / f"{split}-nolabels.h5",
                  f"{split}-sslkit.h5": folder / f"{split}-sslkit.h5"}  # fmt: skip
    return found


def _notes(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("note:")]


def _one_line_error(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: ")
    return lines[0]


def test_knn_on_npy_and_plain_hdf5_equals_the_sslkit_file(files, tmp_path):
    """Same numbers, same kNN; a one-line note per foreign file; provenance unknown in JSON."""
    reference = run_cli("knn", "--train-features", files["train-sslkit.h5"], "--test-features",
                        files["test-sslkit.h5"], "--k", "5,10,20", "--json", tmp_path / "ref.json")
    assert _notes(reference) == []
    npy = run_cli("knn", "--train-features", files["train.npy"], "--train-labels",
                  files["train-labels.npy"], "--test-features", files["test.npy"],
                  "--test-labels", files["test-labels.npy"], "--k", "5,10,20",
                  "--json", tmp_path / "npy.json")  # fmt: skip
    notes = _notes(npy)
    assert len(notes) == 2 and all(PROVENANCE_NOTE in note for note in notes)
    assert str(files["train.npy"]) in notes[0] and str(files["test.npy"]) in notes[1]
    tool = run_cli("knn", "--train-features", files["train-tool.h5"], "--test-features",
                   files["test-tool.h5"], "--k", "5,10,20", "--json", tmp_path / "tool.json")
    assert len(_notes(tool)) == 2
    ref, ours, theirs = (json.loads((tmp_path / f"{name}.json").read_text())
                         for name in ("ref", "npy", "tool"))  # fmt: skip
    assert ours["k"] == ref["k"] == theirs["k"] and ref["best"]["top1"] > 90
    assert ours["inputs"]["train"]["provenance"] == "unknown"
    assert ours["inputs"]["test"]["labels_file"] == str(files["test-labels.npy"])
    assert "provenance" not in ref["inputs"]["train"]


def test_knn_and_linear_say_they_need_labels(files):
    for command in ("knn", "linear"):
        line = _one_line_error(run_cli(command, "--train-features", files["train.npy"],
                                       "--train-labels", files["train-labels.npy"],
                                       "--test-features", files["test.npy"],
                                       expect=2))  # fmt: skip
        assert "needs labels" in line and "test.npy has none" in line
        assert "--test-labels FILE.npy" in line
        line = _one_line_error(run_cli(command, "--train-features", files["train-nolabels.h5"],
                                       "--test-features", files["test-tool.h5"],
                                       expect=2))  # fmt: skip
        assert "--train-labels FILE.npy" in line


def test_labels_options_need_feature_files(files):
    line = _one_line_error(run_cli("knn", "--checkpoint", "c.pt", "--data", "digits",
                                   "--train-labels", files["train-labels.npy"], expect=2))
    assert "give them with --train-features" in line


def test_linear_on_npy_equals_the_sslkit_file(files, tmp_path):
    """The L-BFGS probe gives the same result on the same numbers, whatever the file."""
    run_cli("linear", "--train-features", files["train-sslkit.h5"], "--test-features",
            files["test-sslkit.h5"], "--json", tmp_path / "ref.json")  # fmt: skip
    npy = run_cli("linear", "--train-features", files["train.npy"], "--train-labels",
                  files["train-labels.npy"], "--test-features", files["test.npy"],
                  "--test-labels", files["test-labels.npy"], "--json", tmp_path / "npy.json")
    assert len(_notes(npy)) == 2
    ref, ours = (json.loads((tmp_path / f"{name}.json").read_text()) for name in ("ref", "npy"))
    assert ours["result"] == ref["result"] and ref["result"]["top1"] > 90
    assert ref["notes"] == [] and ours["inputs"]["train"]["provenance"] == "unknown"


def test_cluster_with_and_without_labels(files, tmp_path):
    """Without labels: no AMI and a note saying so; with --labels-file: the sslkit file's AMI."""
    ref = run_cli("cluster", "--features", files["train-sslkit.h5"], "--clusters", "3",
                  "--out", tmp_path / "ref.h5", "--json", "-")  # fmt: skip
    bare = run_cli("cluster", "--features", files["train.npy"], "--clusters", "3", "--out",
                   tmp_path / "bare.h5", "--json", "-")  # fmt: skip
    notes = _notes(bare)
    assert len(notes) == 2 and PROVENANCE_NOTE in notes[0] and "no AMI" in notes[1]
    assert "ami" not in json.loads(bare.stdout)["levels"][0]
    labelled = run_cli("cluster", "--features", files["train.npy"], "--labels-file",
                       files["train-labels.npy"], "--clusters", "3", "--out",
                       tmp_path / "labelled.h5", "--json", "-")  # fmt: skip
    assert len(_notes(labelled)) == 1
    ours, theirs = json.loads(labelled.stdout), json.loads(ref.stdout)
    assert ours["levels"] == theirs["levels"] and theirs["levels"][0]["ami"] > 80
    with h5py.File(tmp_path / "labelled.h5", "r") as handle:
        assert handle.attrs["features_provenance"] == "unknown"


def _bad(tmp_path: Path, case: str) -> tuple[Path, Path | None]:
    """A feature file (and labels) with one thing wrong."""
    features, labels = _blobs(12, 0)
    if case == "1-d":
        features = features[:, 0]
    elif case == "3-d":
        features = features.reshape(12, 2, 4)
    elif case == "label count":
        labels = labels[:-1]
    elif case == "nan row":
        features[5, 3] = np.nan
    np.save(tmp_path / "bad.npy", features)
    np.save(tmp_path / "bad-labels.npy", labels)
    return tmp_path / "bad.npy", tmp_path / "bad-labels.npy"


@pytest.mark.parametrize("case", ["1-d", "3-d", "label count", "nan row"])
@pytest.mark.parametrize("command", ["knn", "linear", "cluster"])
def test_bad_shapes_are_one_line_exit_2(files, tmp_path, command, case):
    features, labels = _bad(tmp_path, case)
    if command == "cluster":
        args = ["cluster", "--features", features, "--labels-file", labels, "--clusters", "2",
                "--out", tmp_path / "c.h5"]  # fmt: skip
    else:
        args = [command, "--train-features", features, "--train-labels", labels,
                "--test-features", files["test.npy"], "--test-labels", files["test-labels.npy"]]
    line = _one_line_error(run_cli(*args, expect=2))
    expected = {"1-d": "must be N x D", "3-d": "must be N x D",
                "label count": "has 11 labels but the features", "nan row": "NaN"}[case]
    assert expected in line and "bad.npy" in line
    assert not (tmp_path / "c.h5").exists()


def test_python_api_takes_the_labels(files, tmp_path):
    """The API functions take the same files and labels, named like the options."""
    knn = sslkit.knn(train_features=files["train.npy"], train_labels=files["train-labels.npy"],
                     test_features=files["test.npy"], test_labels=files["test-labels.npy"],
                     k=[5, 10], no_progress=True)  # fmt: skip
    assert knn.best["top1"] > 90 and PROVENANCE_NOTE in knn["notes"][0]
    linear = sslkit.linear(train_features=files["train-tool.h5"],
                           test_features=files["test-tool.h5"], no_progress=True)  # fmt: skip
    assert linear["result"]["top1"] > 90 and len(linear["notes"]) == 2
    clustered = sslkit.cluster(files["train.npy"], [3], tmp_path / "c.h5",
                               labels_file=files["train-labels.npy"], no_progress=True)
    assert clustered.levels[0]["ami"] > 80
