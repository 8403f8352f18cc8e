"""Bad input: one line naming the problem and the fix, exit code 2, nothing half-written."""

from __future__ import annotations

import h5py
import numpy as np
import torch
from PIL import Image

from tests.conftest import QUICK_MOCO, run_cli


def _one_line_error(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: ")
    return lines[0]


def test_unknown_method_lists_the_known_ones():
    """An unknown method is named, with the known methods."""
    line = _one_line_error(run_cli("pretrain", "--method", "nope", expect=2))
    assert "'nope'" in line and "moco" in line


def test_missing_data_path(tmp_path):
    """A missing image folder is bad input."""
    line = _one_line_error(run_cli("pretrain", "--method", "moco", "--data",
                                   f"imagefolder:{tmp_path / 'nowhere'}", "--workdir",
                                   tmp_path / "w", expect=2))  # fmt: skip
    assert "does not exist" in line


def test_corrupt_image_is_named(tmp_path):
    """A file that is not an image stops training with its name."""
    for cls in ("a", "b"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(np.full((40, 40, 3), 40 * i, np.uint8)).save(
                tmp_path / "imgs" / cls / f"{i}.png")
    (tmp_path / "imgs" / "b" / "bad.jpg").write_bytes(b"not a jpeg")
    line = _one_line_error(run_cli("pretrain", "--method", "moco", "--data",
                                   f"imagefolder:{tmp_path / 'imgs'}", "--epochs", "1",
                                   "--workdir", tmp_path / "w", *QUICK_MOCO[:2],
                                   "--batch-size", "9", "--set", "data.image_size=32",
                                   "--no-progress", expect=2))  # fmt: skip
    assert "bad.jpg" in line
    assert not (tmp_path / "w" / "checkpoint.pt").exists()


def test_checkpoint_of_the_wrong_kind(tmp_path):
    """A file that holds no encoder is refused."""
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    line = _one_line_error(run_cli("extract", "--checkpoint", tmp_path / "other.pt", "--data",
                                   "digits", "--out", tmp_path / "f.h5", expect=2))  # fmt: skip
    assert "wrong kind" in line
    assert not (tmp_path / "f.h5").exists()


def test_garbage_checkpoint(tmp_path):
    """A file that is not a torch checkpoint at all is refused."""
    (tmp_path / "junk.pt").write_bytes(b"\x00garbage" * 10)
    line = _one_line_error(run_cli("knn", "--checkpoint", tmp_path / "junk.pt", "--data",
                                   "digits", expect=2))  # fmt: skip
    assert "cannot read checkpoint" in line


def test_feature_files_of_different_dimension(tmp_path):
    """Train and test features of different widths are refused."""
    for name, dim in (("a.h5", 8), ("b.h5", 16)):
        with h5py.File(tmp_path / name, "w") as handle:
            handle["features"] = np.zeros((5, dim), np.float32)
            handle["labels"] = np.zeros(5, np.int64)
            handle["indices"] = np.arange(5)
            handle.attrs["format"] = "sslkit.features"
    line = _one_line_error(run_cli("knn", "--train-features", tmp_path / "a.h5", "--test-features",
                                   tmp_path / "b.h5", expect=2))  # fmt: skip
    assert "8-d" in line and "16-d" in line


def test_existing_workdir_needs_resume_or_force(digits_run):
    """A workdir with a checkpoint is not overwritten silently."""
    line = _one_line_error(run_cli("pretrain", "--method", "moco", "--workdir", digits_run,
                                   expect=2))  # fmt: skip
    assert "--resume" in line and "--force" in line


def test_bad_set_and_unknown_config_key(tmp_path):
    """--set needs SECTION.KEY=VALUE and known keys."""
    _one_line_error(run_cli("pretrain", "--method", "moco", "--set", "lr", "--workdir",
                            tmp_path, expect=2))  # fmt: skip
    line = _one_line_error(run_cli("pretrain", "--method", "moco", "--set", "train.lrr=1",
                                   "--workdir", tmp_path, expect=2))  # fmt: skip
    assert "lrr" in line


def test_debug_shows_the_traceback():
    """--debug prints the traceback as well."""
    result = run_cli("--debug", "pretrain", "--method", "nope", expect=2)
    assert "Traceback" in result.output


def test_knn_needs_one_kind_of_input(tmp_path):
    """Feature files and --checkpoint are exclusive."""
    _one_line_error(run_cli("knn", "--train-features", tmp_path / "a.h5", "--data", "digits",
                            expect=2))
