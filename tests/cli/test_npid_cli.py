"""NPID through the CLI: pretrain on 256 digits, kNN on the backbone and the head, resume."""

from __future__ import annotations

import json

import torch

from tests.conftest import run_cli

QUICK_NPID = ["--data", "digits@256", "--batch-size", "64", "--arch", "resnet18",
              "--no-progress", "--set", "train.checkpoint_every=1"]  # fmt: skip


def test_pretrain_then_knn(tmp_path):
    """One epoch of NPID writes the bank into the checkpoint; knn scores both layers."""
    workdir = tmp_path / "run"
    run_cli("pretrain", "--method", "npid", "--epochs", "1", "--workdir", workdir,
            "--json", tmp_path / "summary.json", *QUICK_NPID)  # fmt: skip
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["method"] == "npid" and summary["steps"] == 256 // 64
    checkpoint = torch.load(workdir / "checkpoint.pt", weights_only=True)
    assert checkpoint["method"] == "npid"
    bank = checkpoint["method_state"]["memory_bank.bank"]
    assert bank.shape == (256, 128)  # one row per training image, rows updated to unit norm
    torch.testing.assert_close(bank.norm(dim=1), torch.ones(256))
    assert checkpoint["config"]["method"]["nce_k"] == 0  # the digits recipe was applied
    for layer in ("backbone", "head"):
        out = tmp_path / f"knn-{layer}.json"
        run_cli("knn", "--checkpoint", workdir / "checkpoint.pt", "--data", "digits@256",
                "--layer", layer, "--cache-dir", tmp_path / "cache", "--json", out)  # fmt: skip
        result = json.loads(out.read_text())
        assert result["best"]["top1"] > 20.0  # 10 classes: chance is 10 %


def test_nce_resume_continues_exactly(tmp_path):
    """NCE (K=64): 1 epoch + --resume to 2 equals 2 epochs straight, bank and Z included."""
    exact = [*QUICK_NPID, "--set", "method.nce_k=64", "--set", "train.schedule_unit=epoch"]
    run_cli("pretrain", "--method", "npid", "--epochs", "2", "--workdir", tmp_path / "straight",
            *exact)  # fmt: skip
    run_cli("pretrain", "--method", "npid", "--epochs", "1", "--workdir", tmp_path / "resumed",
            *exact)  # fmt: skip
    run_cli("pretrain", "--method", "npid", "--epochs", "2", "--workdir", tmp_path / "resumed",
            "--resume", *exact)  # fmt: skip
    straight = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)
    resumed = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)
    assert resumed["step"] == straight["step"] == 2 * 256 // 64
    assert float(straight["method_state"]["nce_z"]) > 0
    for key, value in straight["method_state"].items():
        torch.testing.assert_close(resumed["method_state"][key], value, msg=key)
