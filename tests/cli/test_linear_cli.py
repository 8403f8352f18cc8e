"""``sslkit linear`` end to end on digits: features and augment modes, files, resume, errors."""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import run_cli


def _probe(digits_run, tmp_path, *extra):
    out = tmp_path / "linear.json"
    run_cli("linear", "--checkpoint", digits_run / "checkpoint.pt", "--data", "digits",
            "--cache-dir", tmp_path / "cache", "--json", out, *extra)  # fmt: skip
    return json.loads(out.read_text())


def test_the_default_is_the_validated_lbfgs_probe(digits_run, tmp_path):
    """No recipe: logistic regression on cached features, its cost chosen on 20 % of the
    training split; it says so, and it beats the SGD recipes' untuned results."""
    result = _probe(digits_run, tmp_path)
    assert result["protocol"] == "lbfgs-logistic" and result["mode"] == "features"
    assert "chosen on a class-balanced 20 % of the training split" in result["description"]
    scores = result["result"]
    assert scores["cost"] in (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)
    assert list(scores["validation"]) == ["0.001", "0.01", "0.1", "1.0", "10.0", "100.0",
                                          "1000.0"]  # fmt: skip
    assert scores["validation"][str(scores["cost"])] == max(scores["validation"].values())
    assert scores["top1"] > 85.0 and scores["top5"] >= scores["top1"]  # measured 96.2 (kNN 92.4)
    assert result["score_unit"] == "percent" and "history" not in result
    assert result["seconds"] < 120


@pytest.mark.parametrize("args, message", [
    (["--epochs", "30"], "--epochs set an SGD recipe's schedule: add --recipe"),
    (["--mode", "augment"], "--mode augment set an SGD recipe's schedule"),
    (["--recipe", "pcl", "--costs", "1"], "--costs are the L-BFGS probe's"),
])  # fmt: skip
def test_sgd_options_need_a_recipe(digits_run, args, message):
    result = run_cli("linear", "--checkpoint", digits_run / "checkpoint.pt", "--data", "digits",
                     *args, expect=2)  # fmt: skip
    assert message in result.output and len(result.output.strip().splitlines()) == 1


def test_features_mode_scores_and_records_provenance(digits_run, tmp_path):
    """Cached raw features, 10 epochs of the MoCo v2 recipe: far above chance on digits."""
    result = _probe(digits_run, tmp_path, "--mode", "features", "--recipe", "mocov2",
                    "--epochs", "10")  # fmt: skip
    assert result["protocol"] == "sgd" and result["mode"] == "features"
    assert result["recipe"]["name"] == "mocov2" and result["recipe"]["lr"] == 30.0
    assert result["num_classes"] == 10 and len(result["history"]) == 10
    assert result["result"]["top1"] > 60.0
    assert result["result"]["best"]["top1"] >= result["result"]["top1"]
    for split in ("train", "test"):
        source = result["inputs"][split]
        assert len(source["checkpoint_sha256"]) == 64 and source["dataset_fingerprint"]
        assert source["normalized"] in (False, 0)  # raw features: the probe's usual input
    again = _probe(digits_run, tmp_path, "--mode", "features", "--recipe", "mocov2",
                   "--epochs", "10")  # fmt: skip
    assert again["inputs"]["train"]["cache_hit"] and again["result"] == result["result"]


def test_feature_files_mode(digits_run, tmp_path):
    """--train/--test feature files from extract are probed directly."""
    for split in ("train", "test"):
        run_cli("extract", "--checkpoint", digits_run / "checkpoint.pt", "--data", "digits",
                "--split", split, "--out", tmp_path / f"{split}.h5")  # fmt: skip
    result = run_cli("linear", "--train-features", tmp_path / "train.h5", "--test-features",
                     tmp_path / "test.h5",
                     "--recipe", "adco", "--lr", "1.0", "--epochs", "5", "--json", "-")  # fmt: skip
    data = json.loads(result.stdout)
    assert data["mode"] == "features" and data["recipe"]["schedule"] == "cosine"
    assert data["result"]["top1"] > 50.0


def test_augment_mode_with_workdir_and_resume(digits_run, tmp_path):
    """The papers' protocol runs, checkpoints every epoch and resumes; reruns need a flag."""
    workdir = tmp_path / "probe"
    # raw features of this weak backbone have norms ~25: the ImageNet lrs are far too big
    args = ["--recipe", "pcl", "--lr", "0.001", "--epochs", "3", "--batch-size", "128",
            "--workdir", workdir]  # fmt: skip
    first = _probe(digits_run, tmp_path, *args)
    assert first["mode"] == "augment" and first["inputs"]["train"]["augmented"]
    assert first["result"]["best"]["top1"] > 15.0  # measured 27.6 (chance: 10)
    saved = torch.load(workdir / "linear.pt", weights_only=True)
    assert saved["epochs_done"] == 3 and saved["meta"]["format"] == "sslkit.linear-probe"
    assert json.loads((workdir / "linear.json").read_text())["result"] == first["result"]
    refused = run_cli("linear", "--checkpoint", digits_run / "checkpoint.pt", "--data", "digits",
                      *args, expect=2)  # fmt: skip
    assert "--resume" in refused.output
    resumed = _probe(digits_run, tmp_path, *args, "--resume")
    assert resumed["history"] == first["history"]
    other = run_cli("linear", "--checkpoint", digits_run / "checkpoint.pt", "--data", "digits",
                    *args[:-4], "--epochs", "4", "--workdir", workdir, "--resume",
                    expect=2)  # fmt: skip
    assert "another recipe" in other.output and "--force" in other.output


@pytest.mark.parametrize("args, message", [
    (["--recipe", "nope"], "unknown linear recipe"),
    (["--train-features", "x.h5"], "either"),
])  # fmt: skip
def test_bad_input_is_one_line_exit_2(digits_run, args, message):
    """Unknown recipes and mixed inputs are refused with a one-line message."""
    result = run_cli("linear", "--checkpoint", digits_run / "checkpoint.pt", "--data", "digits",
                     *args, expect=2)  # fmt: skip
    assert message in result.output and len(result.output.strip().splitlines()) == 1


def test_long_tail_adds_shot_groups(digits_run, tmp_path):
    """features mode on digits~lt10: many/medium/few top-1 of the final epoch's probe."""
    out = tmp_path / "linear.json"
    result = run_cli("linear", "--checkpoint", digits_run / "checkpoint.pt", "--data",
                     "digits~lt10", "--cache-dir", tmp_path / "cache", "--mode", "features",
                     "--recipe", "mocov2", "--lr", "0.1", "--epochs", "3",
                     "--json", out)  # fmt: skip
    assert "few (<20)" in result.output  # the many/medium/few table
    data = json.loads(out.read_text())
    shots = data["shot_groups"]
    assert shots["epoch"] == 3 and data["inputs"]["train"]["dataset"] == "digits~lt10"
    assert [shots[group]["classes"] for group in ("many", "medium", "few")] == [2, 6, 2]
    overall = sum(shots[g]["top1"] * shots[g]["test_images"] for g in ("many", "medium", "few"))
    assert overall / 450 == pytest.approx(data["result"]["top1"], abs=1.0)
