"""The example plugin ``plugins/sslkit-simclr``: its NT-Xent loss, and install -> list -> train.

The end-to-end test installs the plugin with pip into a temporary folder (``--target``)
and puts that folder on ``PYTHONPATH`` of the child processes, so the venv is never changed.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from sslkit.data.base import DataInfo
from sslkit.distributed import DistEnv
from sslkit.methods.base import Batch, StepContext

REPO = Path(__file__).resolve().parents[2]
PLUGIN = REPO / "plugins" / "sslkit-simclr"


@pytest.fixture(scope="module")
def simclr_module():
    """The plugin's module, imported from its source folder."""
    sys.path.insert(0, str(PLUGIN))
    try:
        import sslkit_simclr

        yield sslkit_simclr
    finally:
        sys.path.remove(str(PLUGIN))


def test_nt_xent_identical_views(simclr_module) -> None:
    """B=2, z1 = z2 = [e1, e2]: each anchor has its positive at cos 1 and two negatives at 0."""
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    temperature = 0.5
    # Row 0 of sim (diagonal masked): [-inf, 0, 1/T, 0], target column 2.
    expected = -math.log(math.exp(2.0) / (math.exp(2.0) + 2.0))
    loss = simclr_module.nt_xent(z, z.clone(), temperature)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_nt_xent_masks_self_and_normalises(simclr_module) -> None:
    """z1 = [e1, e2], z2 = [e2, e1]: positives at cos 0 and a hard negative at cos 1.

    Unmasked, the self-similarity 1/T would enter the denominator; scaling the inputs
    must not change the loss (NT-Xent normalises the embeddings).
    """
    z1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    z2 = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    temperature = 1.0
    # Row 0 of sim: [-inf, 0 (neg e2), 0 (pos e2), 1 (neg e1)], target column 2.
    expected = -math.log(1.0 / (1.0 + 1.0 + math.e))
    loss = simclr_module.nt_xent(3.0 * z1, 0.25 * z2, temperature)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_training_step_has_gradient(simclr_module) -> None:
    """One step with a tiny stand-in backbone: a finite loss that reaches backbone and head."""
    backbone = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 16))
    backbone.feature_dim = 16
    info = DataInfo("toy", 10, 8, 3, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    method = simclr_module.SimCLR(simclr_module.SimCLR.Config(dim=4), backbone, info)
    views = [torch.randn(6, 3, 8, 8), torch.randn(6, 3, 8, 8)]
    ctx = StepContext(epoch=0, step=0, epochs=1, steps_per_epoch=1, lr_factor=1.0,
                      dist=DistEnv(0, 1, 0, torch.device("cpu")),
                      generator=torch.Generator())  # fmt: skip
    out = method.training_step(Batch(views, torch.arange(6)), ctx)
    assert set(out) == {"loss", "loss/nt_xent"} and torch.isfinite(out["loss"])
    out["loss"].backward()
    assert backbone[1].weight.grad is not None and method.head[-1].weight.grad is not None
    assert method.embed(views[0]).shape == (6, 4)


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=600)  # fmt: skip


def test_install_list_and_pretrain(tmp_path: Path) -> None:
    """pip-install the plugin into a temporary folder, see it listed, train it for one epoch."""
    # Build from a copy so pip's build/ and *.egg-info never land in the repository.
    source = tmp_path / "src"
    shutil.copytree(PLUGIN, source, ignore=shutil.ignore_patterns(
        "build", "*.egg-info", "__pycache__"))  # fmt: skip
    site = tmp_path / "site"
    install = _run(["-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                    "--disable-pip-version-check", "--target", str(site), str(source)],
                   dict(os.environ), tmp_path)  # fmt: skip
    assert install.returncode == 0, install.stdout + install.stderr

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    listed = _run(["-m", "sslkit", "methods", "--json", "-"], env, tmp_path)
    assert listed.returncode == 0, listed.stderr
    methods = {m["name"]: m for m in json.loads(listed.stdout)["methods"]}
    assert methods["simclr"]["loaded"], methods["simclr"]["error"]
    assert methods["simclr"]["package"] == "sslkit-simclr"
    assert methods["moco"]["loaded"]

    workdir, out = tmp_path / "run", tmp_path / "out.json"
    trained = _run(["-m", "sslkit", "pretrain", "--method", "simclr", "--data", "digits@200",
                    "--epochs", "1", "--batch-size", "64", "--arch", "resnet18",
                    "--workdir", str(workdir), "--no-progress", "--json", str(out)],
                   env, tmp_path)  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    assert (workdir / "checkpoint.pt").is_file()
    summary = json.loads(out.read_text())
    assert summary["method"] == "simclr"
    assert math.isfinite(summary["final"]["loss"])
