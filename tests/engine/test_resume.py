"""--resume continues exactly: 1 epoch + resume to 2 equals 2 epochs straight."""

from __future__ import annotations

import torch

from tests.conftest import QUICK_MOCO, run_cli

EXACT = [*QUICK_MOCO, "--set", "train.schedule_unit=epoch", "--data", "digits@256"]


def test_resume_continues_exactly(tmp_path):
    """Model, optimiser, queue and step after resume match an uninterrupted run."""
    run_cli("pretrain", "--method", "moco", "--epochs", "2", "--workdir", tmp_path / "straight",
            *EXACT)  # fmt: skip
    run_cli("pretrain", "--method", "moco", "--epochs", "1", "--workdir", tmp_path / "resumed",
            *EXACT)  # fmt: skip
    run_cli("pretrain", "--method", "moco", "--epochs", "2", "--workdir", tmp_path / "resumed",
            "--resume", *QUICK_MOCO)  # fmt: skip
    straight = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)
    resumed = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)
    assert resumed["epoch"] == straight["epoch"] == 2
    assert resumed["step"] == straight["step"]
    for key, value in straight["method_state"].items():
        torch.testing.assert_close(resumed["method_state"][key], value, msg=key)
    momentum_a = straight["optimizer"]["state"]
    momentum_b = resumed["optimizer"]["state"]
    for index in momentum_a:
        torch.testing.assert_close(momentum_b[index]["momentum_buffer"],
                                   momentum_a[index]["momentum_buffer"])  # fmt: skip


def test_resume_without_checkpoint_starts_fresh(tmp_path):
    """--resume on an empty workdir trains from scratch (what a relaunch script wants)."""
    run_cli("pretrain", "--method", "moco", "--epochs", "1", "--workdir", tmp_path, "--resume",
            *EXACT)  # fmt: skip
    assert (tmp_path / "checkpoint.pt").is_file()
