"""Learning tests on real data: MoCo and HCSC on a Fashion-MNIST subset.

What is asserted, and why (figures in BENCHMARKS.md, "Learning tests"):

* On the full split the shipped MoCo recipe needs ~23 CPU minutes to pass its random
  initialisation (BENCHMARKS.md), more than CI can spend on one test. On the 10,000-image
  subset that CI can afford (4 epochs, ~6 minutes), every run first falls below random init
  and is still climbing at the end; so the test asserts the preferred-if-affordable
  fallback: the final encoder beats **its own first-epoch checkpoint** by a margin well
  below the measured gain (MoCo: +3.7 points).
* HCSC: the same kNN criterion, and its clusters (k-means, k = 10, of the backbone
  features) agree better with the classes (AMI) than those of the first epoch.
* Evaluations (issue 5): the same HCSC encoder beats a randomly initialised ResNet-18 on
  the linear probe (cached features, 20 epochs; measured +4.1 points) and on fine-tuning
  with 10 % of the labels (HCSC recipe, 6 epochs; measured +4.2 points).
"""

from __future__ import annotations

import json

import pytest
import torch

from sslkit.data.sources import DEBIAN_FASHION_MNIST
from tests.conftest import run_cli

SUBSET = "fashion-mnist@10000"
KNN_MARGIN = {"moco": 1.5, "hcsc": 1.5}  # kNN top-1 points; measured +3.7 and +3.2
AMI_MARGIN = 0.05  # measured AMI gain +0.125
LINEAR_MARGIN = 2.0  # top-1 points over random init; measured +4.05 (79.58 vs 75.53)
SEMISUP_MARGIN = 1.5  # top-1 points over random init; measured +4.17 (68.95 vs 64.78)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file(),
        reason="Fashion-MNIST is not installed: apt-get install dataset-fashion-mnist",
    ),
]


def _knn_top1(tmp_path, checkpoint, name: str) -> float:
    out = tmp_path / f"{name}.json"
    run_cli("knn", "--checkpoint", checkpoint, "--data", SUBSET, "--k", "200",
            "--cache-dir", tmp_path / "cache", "--json", out)  # fmt: skip
    return json.loads(out.read_text())["best"]["top1"]


def _ami(tmp_path, checkpoint, name: str) -> float:
    features, out = tmp_path / f"{name}.h5", tmp_path / f"{name}-clusters.json"
    run_cli("extract", "--checkpoint", checkpoint, "--data", SUBSET, "--out", features)
    run_cli("cluster", "--features", features, "--k", "10", "--nredo", "3",
            "--out", tmp_path / f"{name}-clusters.h5", "--json", out)  # fmt: skip
    return json.loads(out.read_text())["levels"][0]["ami"]


def _train(folder, method: str):
    workdir = folder / method
    run_cli("pretrain", "--method", method, "--data", SUBSET, "--workdir", workdir,
            "--set", "train.keep_checkpoints=true", "--no-progress")  # fmt: skip
    return workdir / "checkpoint_epoch0001.pt", workdir / "checkpoint.pt"


def test_moco_learns_on_fashion_mnist(tmp_path):
    """MoCo's shipped recipe: final kNN top-1 exceeds the first epoch's by the margin."""
    first, final = _train(tmp_path, "moco")
    first_top1 = _knn_top1(tmp_path, first, "first")
    final_top1 = _knn_top1(tmp_path, final, "final")
    assert final_top1 > first_top1 + KNN_MARGIN["moco"], (first_top1, final_top1)


@pytest.fixture(scope="module")
def hcsc_run(tmp_path_factory):
    """HCSC's shipped recipe on the subset: (first-epoch, final) checkpoints."""
    return _train(tmp_path_factory.mktemp("learning"), "hcsc")


def test_hcsc_learns_on_fashion_mnist(tmp_path, hcsc_run):
    """HCSC's shipped recipe: kNN top-1 and cluster AMI both improve after the first epoch."""
    first, final = hcsc_run
    first_top1 = _knn_top1(tmp_path, first, "first")
    final_top1 = _knn_top1(tmp_path, final, "final")
    assert final_top1 > first_top1 + KNN_MARGIN["hcsc"], (first_top1, final_top1)
    first_ami, final_ami = _ami(tmp_path, first, "first"), _ami(tmp_path, final, "final")
    assert final_ami > first_ami + AMI_MARGIN, (first_ami, final_ami)


def _linear_top1(tmp_path, checkpoint) -> float:
    result = run_cli("linear", "--checkpoint", checkpoint, "--data", SUBSET, "--mode", "features",
                     "--recipe", "adco", "--lr", "0.03", "--epochs", "20",
                     "--cache-dir", tmp_path / "cache", "--json", "-")  # fmt: skip
    return json.loads(result.stdout)["result"]["top1"]


def _semisup_top1(checkpoint) -> float:
    result = run_cli("semisup", "--checkpoint", checkpoint, "--data", SUBSET, "--labels", "0.1",
                     "--recipe", "hcsc", "--epochs", "6", "--milestones", "4,5",
                     "--batch-size", "64", "--eval-every", "6", "--json", "-")  # fmt: skip
    return json.loads(result.stdout)["result"]["top1"]


def test_linear_and_semisup_beat_random_init(tmp_path, hcsc_run):
    """The trained encoder beats a random ResNet-18 on the linear probe and on 10 % labels."""
    from sslkit.models.backbones import build_backbone

    torch.manual_seed(0)
    random_init = tmp_path / "random-resnet18.pt"
    torch.save(build_backbone("resnet18").state_dict(), random_init)  # torchvision format
    _, final = hcsc_run
    trained, baseline = _linear_top1(tmp_path, final), _linear_top1(tmp_path, random_init)
    assert trained > baseline + LINEAR_MARGIN, (trained, baseline)
    trained, baseline = _semisup_top1(final), _semisup_top1(random_init)
    assert trained > baseline + SEMISUP_MARGIN, (trained, baseline)
