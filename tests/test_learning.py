"""Learning test on real data: MoCo on a Fashion-MNIST subset beats its random initialisation.

Why a subset and this comparison: the full-split recipe needs ~25 CPU minutes (see
BENCHMARKS.md), more than CI can spend on one test. On 10,000 training images the
shipped recipe, run for the epochs below, lifts kNN top-1 above the same network at its
random initialisation (same seed, same evaluation) by the measured gain recorded in
BENCHMARKS.md; the assertion keeps a margin for noise.
"""

from __future__ import annotations

import json

import pytest
import torch

from sslkit.data.sources import DEBIAN_FASHION_MNIST
from sslkit.models.backbones import build_backbone
from tests.conftest import run_cli

SUBSET = "fashion-mnist@10000"
EPOCHS = 4
REQUIRED_GAIN = 1.0  # kNN top-1 points; measured gain in BENCHMARKS.md

pytestmark = pytest.mark.skipif(
    not (DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file(),
    reason="Fashion-MNIST is not installed: apt-get install dataset-fashion-mnist",
)


def _knn_top1(tmp_path, checkpoint, name: str) -> float:
    run_cli("knn", "--checkpoint", checkpoint, "--data", SUBSET, "--k", "200",
            "--cache-dir", tmp_path / "cache", "--json", tmp_path / f"{name}.json")  # fmt: skip
    return json.loads((tmp_path / f"{name}.json").read_text())["best"]["top1"]


@pytest.mark.slow
def test_moco_beats_random_initialisation_on_fashion_mnist(tmp_path):
    """kNN(k=200) of the trained encoder exceeds the random-init encoder's by a margin."""
    run_cli("pretrain", "--method", "moco", "--data", SUBSET, "--epochs", str(EPOCHS),
            "--workdir", tmp_path / "run", "--no-progress")  # fmt: skip
    config = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["config"]
    torch.manual_seed(config["train"]["seed"])  # the trainer's initialisation
    torch.save(build_backbone(config["model"]["arch"]).state_dict(), tmp_path / "init.pt")
    trained = _knn_top1(tmp_path, tmp_path / "run" / "checkpoint.pt", "trained")
    initial = _knn_top1(tmp_path, tmp_path / "init.pt", "init")
    assert trained > initial + REQUIRED_GAIN, (trained, initial)
