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
                     "--train-images", digit_folders / "train",
                     "--test-images", digit_folders / "test",
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


def _mean_squared_norm(digits_run, digit_folders) -> float:
    """Mean squared norm of the raw training features the SGD probe sees."""
    import torch

    from sslkit.features.extract import load_feature_network
    from sslkit.features.service import compute_features

    network = load_feature_network(digits_run / "checkpoint.pt", "backbone")
    dataset = load_split(f"imagefolder:{digit_folders}", "train", image_size=32)
    features = compute_features(network, dataset, torch.device("cpu"), normalized=False).features
    return float((features.astype(np.float64) ** 2).sum(axis=1).mean())


def test_imagefolder_sgd_transfer_and_knn_transfer(digits_run, digit_folders, tmp_path):
    """The SGD probe and the zero-shot kNN both run on the same folders.

    The raw features of the 2-epoch fixture encoder have a scale that differs between
    machines (mean norm ~375 on a 2-core AMD EPYC, where a fixed lr of 0.001 that passed
    elsewhere ends at chance: its BN statistics come from a few steps), so the probe's lr
    is set from it: 3 / mean ||x||^2 (measured there: 1-10 / mean ||x||^2 all reach 87 %),
    120 steps of 10 images.
    """
    lr = 3.0 / _mean_squared_norm(digits_run, digit_folders)
    sgd = _transfer(digits_run, digit_folders, tmp_path, "--task", "imagefolder",
                    "--protocol", "sgd", "--lr", f"{lr:.4g}", "--epochs", "20",
                    "--batch-size", "10")  # fmt: skip
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
                     digits_run / "checkpoint.pt", "--train-images", digit_folders / "train",
                     "--test-images", other, expect=2)  # fmt: skip
    assert "other class folders" in result.output


# --- VOC07 and Places205 ---------------------------------------------------------------


def test_images_are_embedded_as_the_checkpoint_was_trained(digits_run, digit_folders,
                                                          tmp_path):  # fmt: skip
    """No --image-size: the checkpoint's 32 px and 0.5 / 0.5 (not 224 px and ImageNet's
    statistics); --image-size changes the size and keeps the normalisation."""
    args = ["transfer", "--checkpoint", digits_run / "checkpoint.pt", "--task", "imagefolder",
            "--train-images", digit_folders / "train", "--test-images", digit_folders / "test",
            "--cache-dir", tmp_path / "cache", "--costs", "1", "--json", "-"]  # fmt: skip
    default = json.loads(run_cli(*args).stdout)
    transform = default["inputs"]["train"]["transform"]
    assert transform == "resize32+normalize(mean=[0.5, 0.5, 0.5],std=[0.5, 0.5, 0.5])"
    assert default["score_unit"] == "percent" and default["result"]["top1"] > 60
    larger = json.loads(run_cli(*args, "--image-size", "40").stdout)
    assert larger["inputs"]["test"]["transform"].startswith("resize40+normalize(mean=[0.5,")


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory):
    """The tiny VOCdevkit/VOC2007 of tests/transfer_data.py (40 digit images, 4 classes)."""
    from tests.transfer_data import write_voc2007

    return write_voc2007(tmp_path_factory.mktemp("voc"))


@pytest.fixture(scope="module")
def places_root(tmp_path_factory):
    """The tiny Places205 layout of tests/transfer_data.py (3 classes, 30 / 15 images)."""
    from tests.transfer_data import write_places205

    return write_places205(tmp_path_factory.mktemp("places"))


def _dataset_transfer(digits_run, task, root, tmp_path, *args):
    result = run_cli("transfer", "--task", task, "--data-root", root, "--checkpoint",
                     digits_run / "checkpoint.pt", "--image-size", "32", "--cache-dir",
                     tmp_path / "cache", *args, "--json", "-")  # fmt: skip
    return json.loads(result.stdout)


def _sha256(path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_voc07_low_shot_svm(one_thread, digits_run, voc_root, tmp_path):
    """PCL's SVM on trainval -> test: k per class, runs, mean/std, provenance in the JSON."""
    out = _dataset_transfer(digits_run, "voc07", voc_root, tmp_path, "--protocol", "svm",
                            "--low-shot", "1,4", "--runs", "2")  # fmt: skip
    result = out["result"]
    assert out["task"] == "voc07" and result["protocol"] == "svm" and result["cost"] == 0.5
    assert set(result["shots"]) == {"1", "4"} and len(result["shots"]["4"]["runs"]) == 2
    # 4 classes present: k images per class drawn from trainval
    assert result["shots"]["1"]["train_size"] == 4 and result["shots"]["4"]["train_size"] == 16
    assert result["shots"]["4"]["mean"] > 60  # chance is about 25
    assert result["shots"]["4"]["per_class"]["bicycle"] is None
    assert set(out["inputs"]) == {"trainval", "test"}
    assert out["checkpoint_sha256"] == _sha256(digits_run / "checkpoint.pt")
    assert out["inputs"]["test"]["checkpoint_sha256"] == out["checkpoint_sha256"]
    assert len(out["inputs"]["test"]["dataset_fingerprint"]) == 16
    assert out["datasets"]["test"]["difficult"] == 3 and len(out["classes"]) == 20
    full = _dataset_transfer(digits_run, "voc07", voc_root, tmp_path, "--protocol", "svm",
                             "--cost", "2")  # fmt: skip
    assert full["result"]["shots"]["full"]["train_size"] == 20 and full["result"]["cost"] == 2.0
    assert full["inputs"]["test"]["cache_hit"] is True  # the same features as above


def test_voc07_standard_linear_layer(one_thread, digits_run, voc_root, tmp_path):
    """Cached features, best epoch on val, per-class test mAP plus the sample-wise metric."""
    out = _dataset_transfer(digits_run, "voc07", voc_root, tmp_path, "--lr", "1e-5",
                            "--epochs", "30", "--batch-size", "4")  # fmt: skip
    result = out["result"]
    assert result["voc_protocol"] == "standard" and result["recipe"]["name"] == "voc07-hcsc"
    assert result["recipe"]["batch_size"] == 4 and len(result["history"]) == 30
    assert result["map"] > 75 and 0 < result["sample_map"] <= 100
    assert 1 <= result["best"]["epoch"] <= 30 and result["per_class"]["sofa"] is None
    assert set(out["inputs"]) == {"train", "val", "test"}


def test_voc07_hcsc_protocol(one_thread, digits_run, voc_root, tmp_path):
    """HCSC's script: T_max=12 lr per epoch, five-crop test, the backbone run in train mode."""
    from sslkit.eval.voc import hcsc_lr

    out = _dataset_transfer(digits_run, "voc07", voc_root, tmp_path, "--voc-protocol", "hcsc",
                            "--epochs", "2", "--batch-size", "6")  # fmt: skip
    result = out["result"]
    assert result["voc_protocol"] == "hcsc" and "T_max=12" in result["schedule"]
    expected_lrs = [hcsc_lr(0.05, 0), hcsc_lr(0.05, 1)]
    assert [row["lr"] for row in result["history"]] == pytest.approx(expected_lrs)
    assert 0 < result["sample_map"] <= 100 and result["best"]["epoch"] in (1, 2)
    assert "fivecrop32" in out["inputs"]["test"]["transform"]
    assert out["inputs"]["train"]["transform"].startswith("squash32")


def test_places205_linear_and_low_shot_svm(one_thread, digits_run, places_root, tmp_path):
    """The places-hcsc recipe on cached features, and PCL's one-vs-rest low-shot SVM."""
    out = _dataset_transfer(digits_run, "places205", places_root, tmp_path, "--lr", "1e-4",
                            "--epochs", "20", "--batch-size", "8")  # fmt: skip
    assert out["result"]["recipe"]["name"] == "places-hcsc" and out["result"]["top1"] > 80
    assert out["classes"] == ["abbey", "beach", "church/outdoor"]
    svm = _dataset_transfer(digits_run, "places205", places_root, tmp_path, "--protocol", "svm",
                            "--low-shot", "2", "--runs", "3")  # fmt: skip
    assert svm["result"]["shots"]["2"]["train_size"] == 6 and svm["result"]["metric"] == "top1"
    assert svm["result"]["shots"]["2"]["mean"] > 50  # chance is 33
    assert svm["inputs"]["val"]["cache_hit"] is True


def _one_line_error(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    return lines[0]


def test_voc07_bad_input_is_one_line_exit_2(digits_run, voc_root, tmp_path):
    """Missing root / ImageSets / split file, wrong option combinations: exit 2, one line."""
    import shutil

    ckpt = digits_run / "checkpoint.pt"
    line = _one_line_error(run_cli("transfer", "--task", "voc07", "--data-root",
                                   tmp_path / "none", "--checkpoint", ckpt,
                                   expect=2))  # fmt: skip
    assert "does not exist" in line
    broken = shutil.copytree(voc_root, tmp_path / "broken")
    (broken / "VOCdevkit" / "VOC2007" / "ImageSets" / "Main" / "test.txt").unlink()
    line = _one_line_error(run_cli("transfer", "--task", "voc07", "--protocol", "svm",
                                   "--data-root", broken, "--checkpoint", ckpt,
                                   expect=2))  # fmt: skip
    assert "test.txt not found" in line
    shutil.rmtree(broken / "VOCdevkit" / "VOC2007" / "ImageSets")
    line = _one_line_error(run_cli("transfer", "--task", "voc07", "--data-root", broken,
                                   "--checkpoint", ckpt, expect=2))  # fmt: skip
    assert "no VOC2007 layout" in line and "VOCdevkit/VOC2007" in line
    line = _one_line_error(run_cli("transfer", "--task", "voc07", "--train-images", voc_root,
                                   "--test-images", voc_root, "--checkpoint", ckpt,
                                   expect=2))  # fmt: skip
    assert "--data-root ROOT" in line
    line = _one_line_error(run_cli("transfer", "--task", "voc07", "--checkpoint", ckpt,
                                   expect=2))  # fmt: skip
    assert "needs --data-root ROOT" in line
    line = _one_line_error(run_cli("transfer", "--task", "imagefolder", "--data-root", voc_root,
                                   "--checkpoint", ckpt, expect=2))  # fmt: skip
    assert "--train-images DIR and --test-images DIR" in line
    line = _one_line_error(run_cli("transfer", "--task", "imagefolder", "--checkpoint", ckpt,
                                   expect=2))  # fmt: skip
    assert "needs --train-images DIR and --test-images DIR" in line
    line = _one_line_error(run_cli("transfer", "--task", "voc07", "--data-root", voc_root,
                                   "--low-shot", "1,2", "--checkpoint", ckpt,
                                   expect=2))  # fmt: skip
    assert "--protocol svm" in line
