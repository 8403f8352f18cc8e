"""Pictures from the CLI: ``cluster --plot``, pretrain's curves.png, TensorBoard scalars."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from PIL import Image

from sslkit.clustering import kmeans
from sslkit.features.store import FeatureSet, write_features
from tests.conftest import QUICK_MOCO, run_cli

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ATTRS = {"layer": "backbone", "dataset": "blobs", "split": "train"}


@pytest.fixture
def blobs(tmp_path):
    """A feature file of 3 Gaussian blobs (150 x 16), some points unlabelled."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 16)) * 4
    labels = np.repeat(np.arange(3), 50)
    features = (centres[labels] + rng.normal(size=(150, 16))).astype(np.float32)
    labels[::10] = -1
    path = tmp_path / "blobs.h5"
    write_features(path, FeatureSet(features, labels, np.arange(150), dict(ATTRS)))
    return path


def test_cluster_plot_writes_a_png(blobs, tmp_path):
    """--plot draws the t-SNE picture and the JSON names it; an existing plot needs --force."""
    plot = tmp_path / "clusters.png"
    args = ["cluster", "--features", blobs, "--clusters", "3", "--plot", plot,
            "--plot-sample", "120"]
    run_cli(*args, "--out", tmp_path / "c.h5", "--json", tmp_path / "c.json")
    assert plot.read_bytes()[:8] == PNG_MAGIC
    with Image.open(plot) as image:
        width, height = image.size
    assert 800 < width < 1600 and 400 < height < 800  # two panels: clusters and labels
    output = json.loads((tmp_path / "c.json").read_text())
    assert output["plot"]["path"] == str(plot)
    assert output["plot"]["points"] == 120 and output["plot"]["k"] == 3
    assert output["levels"][0]["ami"] > 90  # in %; well-separated blobs

    before = plot.read_bytes()
    result = run_cli(*args, "--out", tmp_path / "other.h5", expect=2)
    assert str(plot) in result.output and "--force" in result.output
    assert plot.read_bytes() == before and not (tmp_path / "other.h5").exists()
    run_cli(*args, "--out", tmp_path / "c.h5", "--force")
    assert plot.read_bytes()[:8] == PNG_MAGIC


def test_cluster_without_plot_says_so_in_json(blobs, tmp_path):
    """Without --plot the JSON has "plot": null and no picture is drawn."""
    run_cli("cluster", "--features", blobs, "--clusters", "3", "--out", tmp_path / "c.h5",
            "--json", tmp_path / "c.json")  # fmt: skip
    assert json.loads((tmp_path / "c.json").read_text())["plot"] is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blobs.h5", "c.h5", "c.json"]


def test_cluster_plot_bad_inputs_fail_before_clustering(blobs, tmp_path, monkeypatch):
    """No matplotlib, or a non-PNG name: one line naming the fix, before any k-means."""

    def no_kmeans(*_args, **_kwargs):
        raise AssertionError("clustered before checking --plot")

    monkeypatch.setattr(kmeans, "flat_kmeans", no_kmeans)
    args = ["cluster", "--features", blobs, "--clusters", "3", "--out", tmp_path / "c.h5"]
    result = run_cli(*args, "--plot", tmp_path / "c.pdf", expect=2)
    assert "FILE.png" in result.output
    result = run_cli(*args[:-1], tmp_path / "c.png", "--plot", tmp_path / "c.png", expect=2)
    assert "same file" in result.output
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    result = run_cli(*args, "--plot", tmp_path / "c.png", expect=2)
    assert result.output.strip() == "error: --plot needs matplotlib: pip install 'sslkit[plots]'"
    assert not (tmp_path / "c.h5").exists()


def test_pretrain_writes_curves(digits_run):
    """The shared digits run drew curves.png next to metrics.jsonl; TensorBoard is off."""
    pytest.importorskip("matplotlib", reason="the [plots] extra is not installed")
    curves = digits_run / "curves.png"
    assert curves.read_bytes()[:8] == PNG_MAGIC
    with Image.open(curves) as image:
        assert image.size[0] > 400 and image.size[1] > 200
    assert not (digits_run / "tensorboard").exists()


def test_pretrain_without_matplotlib_still_trains(tmp_path, monkeypatch):
    """No matplotlib: one warning line, no curves.png, and the run (with TensorBoard) works."""
    pytest.importorskip("tensorboard", reason="the [plots] extra (tensorboard) is not installed")
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    workdir = tmp_path / "run"
    result = run_cli("pretrain", "--method", "moco", "--data", "digits@64", "--epochs", "1",
                     "--workdir", workdir, "--set", "train.tensorboard=true",
                     *QUICK_MOCO)  # fmt: skip
    warnings = [line for line in result.output.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and "pip install 'sslkit[plots]'" in warnings[0]
    assert (workdir / "checkpoint.pt").is_file() and not (workdir / "curves.png").exists()
    assert len(list((workdir / "tensorboard").glob("events.out.tfevents.*"))) == 1

    run_cli("pretrain", "--method", "moco", "--data", "digits@64", "--epochs", "1",
            "--workdir", workdir, "--force", *QUICK_MOCO)  # fmt: skip
    assert not (workdir / "tensorboard").exists()  # --force starts the run's files over


def test_pretrain_tensorboard_missing_fails_early(tmp_path, monkeypatch):
    """train.tensorboard=true without tensorboard: exit 2 naming the extra, before training."""
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    result = run_cli("pretrain", "--method", "moco", "--data", "digits@64", "--epochs", "1",
                     "--workdir", tmp_path / "run", "--set", "train.tensorboard=true",
                     *QUICK_MOCO, expect=2)  # fmt: skip
    assert "pip install 'sslkit[plots]'" in result.output
    assert not (tmp_path / "run" / "config.yaml").exists()
