"""SimSiam, BYOL, ConIC (full and sampled) and LoGo through the CLI: train, resume, score."""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import run_cli

QUICK = ["--data", "digits@256", "--batch-size", "64", "--arch", "resnet18", "--no-progress",
         "--set", "train.checkpoint_every=1", "--set", "train.schedule_unit=epoch"]  # fmt: skip
METHODS = {
    "simsiam": [],
    # (the target momentum follows a cosine over train.epochs, which the first half of the
    # resumed run sets to 1: a constant momentum keeps the two runs comparable)
    "byol": ["--set", "method.momentum_schedule=constant"],
    "conic": [],
    "conic-sampled": ["--set", "method.classifier=sampled", "--set", "method.pool_size=96"],
    "moco+logo": [],
    "simsiam+logo": [],
}


@pytest.mark.parametrize("kind", list(METHODS))
def test_resume_continues_exactly_and_both_layers_score(tmp_path, kind):
    """1 epoch + --resume to 2 equals 2 epochs straight (extra optimisers, pools, targets
    included); the encoder and the head embedding score above chance."""
    method = kind.removesuffix("-sampled")
    args = ["--method", method, *QUICK, *METHODS[kind]]
    run_cli("pretrain", "--epochs", "2", "--workdir", tmp_path / "straight", *args)
    run_cli("pretrain", "--epochs", "1", "--workdir", tmp_path / "resumed", *args)
    run_cli("pretrain", "--epochs", "2", "--workdir", tmp_path / "resumed", "--resume", *args)
    straight = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)
    resumed = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)
    assert straight["method"] == method and resumed["step"] == straight["step"] == 8
    for key, value in straight["method_state"].items():
        torch.testing.assert_close(resumed["method_state"][key], value, msg=key)
    for layer in ("backbone", "head"):
        out = tmp_path / f"knn-{layer}.json"
        run_cli("knn", "--checkpoint", tmp_path / "straight" / "checkpoint.pt", "--data",
                "digits@256", "--layer", layer, "--cache-dir", tmp_path / "cache",
                "--json", out)  # fmt: skip
        assert json.loads(out.read_text())["best"]["top1"] > 20.0  # chance is 10 %


def test_a_pool_smaller_than_the_batch_is_a_one_line_error(tmp_path):
    result = run_cli("pretrain", "--method", "conic", *QUICK, "--epochs", "1", "--workdir",
                     tmp_path, "--set", "method.classifier=sampled", "--set",
                     "method.pool_size=32", expect=2)  # fmt: skip
    assert "pool_size" in result.output and "Traceback" not in result.output


def test_logo_needs_a_multi_crop_host(tmp_path):
    result = run_cli("pretrain", "--method", "moco+logo", *QUICK, "--epochs", "1", "--workdir",
                     tmp_path, "--set", "method.multi_crop=false", expect=2)  # fmt: skip
    assert "multi_crop" in result.output


def test_methods_lists_the_new_methods_and_addon():
    result = run_cli("methods", "--json", "-")
    names = {m["name"] for m in json.loads(result.stdout)["methods"]}
    assert {"simsiam", "byol", "conic"} <= names
    assert "logo" in result.stdout
