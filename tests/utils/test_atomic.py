"""Atomic writes create files with the permissions the user's umask gives (not 0600)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch

from sslkit.features.store import FeatureSet, write_features
from sslkit.models.checkpoint import save_checkpoint
from sslkit.utils.atomic import TMP_MARKER, atomic_path, make_executable
from sslkit.utils.jsonout import write_json


@pytest.fixture(params=[0o022, 0o002, 0o077])
def umask(request):
    """Run the test under a umask, restoring the old one after."""
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_outputs_get_the_umask_permissions(tmp_path: Path, umask: int) -> None:
    """Checkpoint, feature file and JSON: 0666 & ~umask, as a plain open() would give."""
    expected = 0o666 & ~umask
    save_checkpoint(tmp_path / "checkpoint.pt", {"weights": torch.zeros(2)})
    write_features(tmp_path / "f.h5", FeatureSet(np.zeros((3, 2), np.float32),
                                                 np.zeros(3, np.int64), np.arange(3), {}))
    write_json({"a": 1}, str(tmp_path / "r.json"))
    (tmp_path / "plain.txt").write_text("x")
    for name in ("checkpoint.pt", "f.h5", "r.json"):
        assert _mode(tmp_path / name) == expected == _mode(tmp_path / "plain.txt"), name


def test_make_executable_adds_x_where_readable(tmp_path: Path, umask: int) -> None:
    with atomic_path(tmp_path / "command.sh") as tmp:
        tmp.write_text("#!/bin/sh\n")
        make_executable(tmp)
    assert _mode(tmp_path / "command.sh") == 0o777 & ~umask


def test_a_failed_write_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "out.json") as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    with atomic_path(tmp_path / "out.json") as tmp:
        assert tmp.name.startswith(TMP_MARKER) and tmp.exists()
