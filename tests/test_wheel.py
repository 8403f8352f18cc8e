"""The sdist and the wheel built from it carry every file under configs/ and sslkit/."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def source_files(folder: str) -> set[str]:
    """The files under a folder of the repository, relative to it (bytecode left out)."""
    base = ROOT / folder
    return {path.relative_to(base).as_posix() for path in base.rglob("*")
            if path.is_file() and "__pycache__" not in path.parts}  # fmt: skip


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    """``python -m build`` of the repository: the sdist, then the wheel built from it."""
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
                            capture_output=True, text=True)  # fmt: skip
    if result.returncode != 0:
        pytest.fail(f"python -m build failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return out


def wheel_names(dist: Path) -> set[str]:
    """The file names inside the one wheel of ``dist``."""
    (wheel,) = dist.glob("sslkit-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def test_wheel_carries_every_config(dist):
    """Every recipe and detectron2 config is in the wheel, as package ``sslkit.configs``."""
    missing = {f"sslkit/configs/{name}" for name in source_files("configs")} - wheel_names(dist)
    assert not missing, f"not in the wheel: {sorted(missing)}"


def test_wheel_carries_every_module(dist):
    """Every file of the sslkit package is in the wheel (pyproject.toml lists the packages)."""
    missing = {f"sslkit/{name}" for name in source_files("sslkit")} - wheel_names(dist)
    assert not missing, f"not in the wheel: {sorted(missing)}"


def test_sdist_carries_every_config(dist):
    """The sdist holds configs/ where the repository does, so wheels built from it have it."""
    (sdist,) = dist.glob("sslkit-*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    missing = {f"configs/{name}" for name in source_files("configs")} - names
    assert not missing, f"not in the sdist: {sorted(missing)}"
