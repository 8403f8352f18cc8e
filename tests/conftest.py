"""Shared fixtures: a small trained MoCo checkpoint on digits, reused across CLI tests."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from sslkit.cli import cli

QUICK_MOCO = ["--set", "method.queue_size=256", "--set", "train.checkpoint_every=1",
              "--batch-size", "64", "--arch", "resnet18", "--no-progress"]  # fmt: skip


def step_context(seed: int = 0, world_size: int = 1):
    """A single-process CPU ``StepContext`` with a seeded generator (method unit tests)."""
    from sslkit.distributed import DistEnv
    from sslkit.methods.base import StepContext

    return StepContext(epoch=0, step=0, epochs=1, steps_per_epoch=1, lr_factor=1.0,
                       dist=DistEnv(0, world_size, 0, torch.device("cpu")),
                       generator=torch.Generator().manual_seed(seed))  # fmt: skip


def epoch_records(workdir: Path) -> list[dict]:
    """The per-epoch records of a run's ``metrics.jsonl``."""
    lines = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in lines if r["kind"] == "epoch"]


def run_cli(*args: str, expect: int | None = 0):
    """Invoke the sslkit CLI in-process; assert the exit code unless ``expect`` is None."""
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    if expect is not None:
        assert result.exit_code == expect, result.output
    return result


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory) -> Path:
    """A 2-epoch MoCo run on 512 digits (about 20 s); returns its workdir."""
    workdir = tmp_path_factory.mktemp("moco-digits")
    run_cli("pretrain", "--method", "moco", "--data", "digits@512", "--epochs", "2",
            "--workdir", workdir, "--json", workdir / "summary.json", *QUICK_MOCO)  # fmt: skip
    assert json.loads((workdir / "summary.json").read_text())["epochs"] == 2
    return workdir


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module of tiny-tensor tests (far faster next to a busy CPU)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def pytest_collection_modifyitems(config, items):
    """Skip ``gpu`` tests, saying why, on machines without CUDA."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU; none is visible on this machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def _hypothesis_profiles() -> None:
    """``ci`` (default): derandomised, the same cases every run; ``explore``: new random
    cases, ten times as many (``HYPOTHESIS_PROFILE=explore``)."""
    try:
        from hypothesis import settings
    except ImportError:  # the property tests import it themselves and say so
        return
    settings.register_profile("ci", derandomize=True, print_blob=True)
    settings.register_profile("explore", derandomize=False)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


_hypothesis_profiles()
