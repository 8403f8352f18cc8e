"""``sslkit transfer`` on image folders made from digits: logistic, SGD and kNN transfer."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from sslkit.data.specs import load_split
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def digit_folders(tmp_path_factory):
    """train/ and test/ folders of PNG digits for classes 0, 1 and 7 (60 / 30 images)."""
    root = tmp_path_factory.mktemp("digit-folders")
    for split, count in (("train", 20), ("test", 10)):
        data = load_split("digits", split)
        for label in (0, 1, 7):
            folder = root / split / f"class{label}"
            folder.mkdir(parents=True)
            for i, index in enumerate(np.flatnonzero(data.labels == label)[:count]):
                image = data.images[index].permute(1, 2, 0).numpy().squeeze()
                Image.fromarray(image).save(folder / f"{i}.png")
    return root


def _transfer(digits_run, digit_folders, tmp_path, *args):
    result = run_cli("transfer", "--checkpoint", digits_run / "checkpoint.pt",
                     "--train", digit_folders / "train", "--test", digit_folders / "test",
                     "--image-size", "32", "--cache-dir", tmp_path / "cache", *args,
                     "--json", "-")  # fmt: skip
    return json.loads(result.stdout)


def test_imagefolder_logistic_transfer(digits_run, digit_folders, tmp_path):
    """Validated L-BFGS logistic regression scores the three digit classes well."""
    out = _transfer(digits_run, digit_folders, tmp_path, "--task", "imagefolder",
                    "--costs", "0.01,1")  # fmt: skip
    assert out["classes"] == ["class0", "class1", "class7"]
    assert out["result"]["protocol"] == "lbfgs-logistic" and out["result"]["cost"] in (0.01, 1)
    assert out["result"]["top1"] > 80 and out["result"]["test_size"] == 30
    assert len(out["inputs"]["train"]["checkpoint_sha256"]) == 64


def test_imagefolder_sgd_transfer_and_knn_transfer(digits_run, digit_folders, tmp_path):
    """The SGD probe and the zero-shot kNN both run on the same folders."""
    sgd = _transfer(digits_run, digit_folders, tmp_path, "--task", "imagefolder",
                    "--protocol", "sgd", "--lr", "0.001", "--epochs", "20")  # fmt: skip
    assert sgd["result"]["protocol"] == "sgd" and sgd["result"]["top1"] > 60
    knn = _transfer(digits_run, digit_folders, tmp_path, "--task", "knn-transfer",
                    "--k", "5,10")  # fmt: skip
    assert knn["result"]["protocol"] == "knn" and knn["result"]["best"]["top1"] > 80


def test_class_folders_must_agree(digits_run, digit_folders, tmp_path):
    """A test folder with other classes than the training folder is bad input."""
    other = tmp_path / "other"
    (other / "zebra").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(other / "zebra" / "0.png")
    result = run_cli("transfer", "--task", "imagefolder", "--checkpoint",
                     digits_run / "checkpoint.pt", "--train", digit_folders / "train",
                     "--test", other, expect=2)  # fmt: skip
    assert "other class folders" in result.output
