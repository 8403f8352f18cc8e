"""Outputs that cannot be written are found before any work; checkpoints that cannot be
read are named plainly. One line, exit 2, nothing written."""

from __future__ import annotations

import os

import pytest
import torch

from tests.conftest import run_cli


def _one_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: ") and "Traceback" not in result.output
    return lines[0]


@pytest.fixture
def blocker(tmp_path):
    """A plain file where a folder would have to be (unwritable for root too)."""
    path = tmp_path / "a-file"
    path.write_text("x")
    return path


def _cases(blocker, checkpoint):
    under = blocker / "sub"
    return {
        "--workdir": ["pretrain", "--method", "moco", "--workdir", under / "run"],
        "--out": ["extract", "--checkpoint", checkpoint, "--data", "digits",
                  "--out", under / "f.h5"],
        "--json": ["knn", "--checkpoint", checkpoint, "--data", "digits",
                   "--json", under / "knn.json"],
        "--cache-dir": ["knn", "--checkpoint", checkpoint, "--data", "digits",
                        "--cache-dir", under / "cache"],
    }  # fmt: skip


@pytest.mark.parametrize("option", ["--workdir", "--out", "--json", "--cache-dir"])
def test_unwritable_output_is_refused_before_the_work(tmp_path, blocker, option, monkeypatch):
    """The check runs when the option is read: no checkpoint is even opened (a missing one
    would be the error otherwise)."""
    missing_checkpoint = tmp_path / "not-there.pt"
    args = _cases(blocker, missing_checkpoint)[option]
    line = _one_line(run_cli(*args, expect=2))
    assert f"cannot write {option}" in line and "is a file, not a folder" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"], "nothing written"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_workdir_is_refused(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        line = _one_line(run_cli("pretrain", "--method", "moco", "--workdir", folder / "run",
                                 expect=2))  # fmt: skip
    finally:
        folder.chmod(0o700)
    assert "cannot write --workdir" in line and "Permission denied" in line


def test_json_to_a_folder_is_refused(tmp_path):
    line = _one_line(run_cli("knn", "--checkpoint", tmp_path / "x.pt", "--data", "digits",
                             "--json", tmp_path, expect=2))  # fmt: skip
    assert "is a folder: give the name of a file" in line


@pytest.mark.parametrize("kind", ["random", "truncated", "empty"])
def test_unreadable_checkpoint_is_named_plainly(tmp_path, digits_run, kind):
    """Random bytes, half a real checkpoint, zero bytes: "not a readable checkpoint",
    without PyTorch's advice to load with weights_only=False."""
    path = tmp_path / "bad.pt"
    whole = (digits_run / "checkpoint.pt").read_bytes()
    path.write_bytes({"random": os.urandom(4096), "truncated": whole[: len(whole) // 2],
                      "empty": b""}[kind])  # fmt: skip
    line = _one_line(run_cli("extract", "--checkpoint", path, "--data", "digits", "--out",
                             tmp_path / "f.h5", expect=2))  # fmt: skip
    assert f"cannot read checkpoint {path}: the file is not a readable PyTorch checkpoint" in line
    assert "weights_only" not in line and not (tmp_path / "f.h5").exists()


def test_truncated_checkpoint_on_resume_is_named(tmp_path, digits_run):
    """--resume of a workdir whose checkpoint.pt was cut: the same plain line."""
    workdir = tmp_path / "run"
    workdir.mkdir()
    whole = (digits_run / "checkpoint.pt").read_bytes()
    (workdir / "checkpoint.pt").write_bytes(whole[:1000])
    line = _one_line(run_cli("pretrain", "--method", "moco", "--data", "digits@256",
                             "--workdir", workdir, "--resume", expect=2))  # fmt: skip
    assert "not a readable PyTorch checkpoint" in line


def test_checkpoint_loading_stays_weights_only(monkeypatch, digits_run):
    """Every read goes through torch.load(weights_only=True)."""
    from sslkit.models import checkpoint

    seen = []
    original = torch.load

    def spy(*args, **kwargs):
        seen.append(kwargs.get("weights_only"))
        return original(*args, **kwargs)

    monkeypatch.setattr(checkpoint.torch, "load", spy)
    checkpoint.read_checkpoint(digits_run / "checkpoint.pt")
    checkpoint.load_encoder(digits_run / "checkpoint.pt")
    assert seen and all(flag is True for flag in seen)
