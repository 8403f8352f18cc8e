"""``sslkit.testing.check_method``: every built-in method, add-on combination and the example
plugin keep the contract; deliberately broken methods fail with the rule they break."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sslkit.methods.registry import get_method
from sslkit.plugin import Batch, Method, StepContext, hp
from sslkit.testing import RULES, ContractError, check_method
from tests.conftest import run_cli

PLUGIN = Path(__file__).resolve().parents[1] / "plugins" / "sslkit-simclr"
SINGLE_PROCESS_RULES = [rule for rule in RULES if rule != "two_processes_stay_in_sync"]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("name", ["moco", "hcsc", "pcl", "npid", "simsiam", "byol", "conic"])
def test_every_builtin_method_keeps_the_contract(name: str) -> None:
    assert check_method(get_method(name)) == SINGLE_PROCESS_RULES


@pytest.mark.parametrize(("name", "overrides"), [
    ("moco+cld", {"queries": 2}), ("npid+cld", {"queries": 2}), ("simsiam+cld", {}),
    ("byol+cld", {}), ("moco+logo", {}), ("simsiam+logo", {}), ("byol+logo", {}),
])  # fmt: skip
def test_every_addon_combination_keeps_the_contract(name: str, overrides: dict) -> None:
    """The recipes' combinations (MoCo and NPID host CLD with two query views)."""
    assert check_method(get_method(name), overrides=overrides) == SINGLE_PROCESS_RULES


def test_the_example_plugin_keeps_the_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(PLUGIN))
    from sslkit_simclr import SimCLR

    assert check_method(SimCLR) == SINGLE_PROCESS_RULES


class Tiny(Method):
    """A small method that keeps every rule: the cosine of two views' head outputs."""

    name = "tiny"
    description = "two views, a linear head, negative cosine"

    @dataclass
    class Config:
        """Tiny's one setting."""

        dim: int = hp(16, "head output dimension")

    def __init__(self, config, backbone, data_info) -> None:
        super().__init__(config, backbone, data_info)
        self.head = nn.Linear(backbone.feature_dim, config.dim)

    def project(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(self.backbone(images)), dim=1)

    def training_step(self, batch: Batch, ctx: StepContext) -> dict[str, torch.Tensor]:
        loss = -(self.project(batch.views[0]) * self.project(batch.views[1])).sum(1).mean()
        return {"loss": loss, "loss/cosine": loss.detach()}

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.project(images)

    def embedding_dim(self) -> int:
        return self.config.dim

    def online_views(self) -> int:
        return 2


class WrongDimension(Tiny):
    """Reports the backbone's width while embed() returns the head's output."""

    def embedding_dim(self) -> int:
        return int(self.backbone.feature_dim)


class DetachedLoss(Tiny):
    """The loss has no gradient at all."""

    def training_step(self, batch, ctx):
        return {"loss": super().training_step(batch, ctx)["loss"].detach()}


class FrozenBackboneLoss(Tiny):
    """The loss reaches the head only."""

    def project(self, images):
        return F.normalize(self.head(self.backbone(images).detach()), dim=1)


class HiddenState(Tiny):
    """Keeps a step counter outside the state dict, and the loss depends on it."""

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.steps_seen = 0

    def training_step(self, batch, ctx):
        self.steps_seen += 1
        output = super().training_step(batch, ctx)
        return {**output, "loss": output["loss"] * (1 + self.steps_seen)}


class GlobalRandomness(Tiny):
    """Draws from torch's global generator instead of ``ctx.generator``."""

    def training_step(self, batch, ctx):
        output = super().training_step(batch, ctx)
        return {**output, "loss": output["loss"] * (1 + torch.rand(()))}


class ViewsNotRun(Tiny):
    """Claims two online views but runs only one through the backbone with gradient."""

    def training_step(self, batch, ctx):
        first = self.project(batch.views[0])
        with torch.no_grad():
            second = self.project(batch.views[1])
        loss = -(first * second).sum(1).mean()
        return {"loss": loss, "loss/cosine": loss.detach()}


class UndocumentedSetting(Tiny):
    """A Config field without a help text."""

    @dataclass
    class Config:
        """A field declared without hp()."""

        dim: int = 16


class ChattyStep(Tiny):
    """Returns a loss term that still carries its gradient."""

    def training_step(self, batch, ctx):
        output = super().training_step(batch, ctx)
        return {**output, "loss/cosine": output["loss"] * 1.0}


def test_a_method_that_keeps_the_rules_passes() -> None:
    assert check_method(Tiny) == SINGLE_PROCESS_RULES


@pytest.mark.parametrize(("broken", "rule"), [
    (WrongDimension, "embed_matches_embedding_dim"),
    (DetachedLoss, "gradient_reaches_backbone"),
    (FrozenBackboneLoss, "gradient_reaches_backbone"),
    (HiddenState, "state_dict_round_trip_resumes_exactly"),
    (GlobalRandomness, "same_seed_gives_same_step"),
    (ViewsNotRun, "hosts_addons_on_its_online_views"),
    (UndocumentedSetting, "builds_from_config_defaults"),
    (ChattyStep, "step_returns_finite_scalar_loss"),
])  # fmt: skip
def test_a_broken_method_fails_with_the_rule_it_breaks(broken: type, rule: str) -> None:
    with pytest.raises(ContractError) as failure:
        check_method(broken)
    assert failure.value.rule == rule and str(failure.value).startswith(f"{rule}: ")
    assert isinstance(failure.value, AssertionError)


@pytest.mark.distributed
def test_two_gloo_processes_stay_in_sync() -> None:
    """MoCo under DDP on 2 forked gloo processes: one step, identical weights and queue."""
    assert check_method(get_method("moco"), processes=2)[-1] == "two_processes_stay_in_sync"


@pytest.fixture
def broken_plugin_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fake distribution registering ``wrongdim``: this module's WrongDimension."""
    dist_info = tmp_path / "wrongdim_plugin-0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: wrongdim-plugin\n"
                                        "Version: 0.1\n")  # fmt: skip
    (dist_info / "entry_points.txt").write_text("[sslkit.methods]\n"
                                                "wrongdim = wrongdim_plugin:WrongDimension\n")
    (tmp_path / "wrongdim_plugin.py").write_text("from tests.test_testing import WrongDimension\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    sys.modules.pop("wrongdim_plugin", None)


def test_methods_check_exits_0_or_1_with_the_rule(broken_plugin_installed, tmp_path) -> None:
    """``sslkit methods --check``: every rule listed and exit 0, or the broken rule and 1."""
    good = run_cli("methods", "--check", "moco", "--json", tmp_path / "ok.json")
    assert "ok  state_dict_round_trip_resumes_exactly" in good.output
    assert json.loads((tmp_path / "ok.json").read_text())["rules"] == SINGLE_PROCESS_RULES
    bad = run_cli("methods", "--check", "wrongdim", expect=1)
    assert "FAILED  embed_matches_embedding_dim:" in bad.output
    assert "Traceback" not in bad.output
    run_cli("methods", "--check", "moco", "--set", "train.lr=1", expect=2)
