"""CLD as an add-on: in-batch k-means and the loss by hand, the paper's invariants, composition."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F

from sslkit.data.base import DataInfo
from sslkit.errors import BadInput
from sslkit.methods.addons import Recorded, compose
from sslkit.methods.base import Batch, Method, StepContext
from sslkit.methods.cld import CLD, batch_kmeans, cld_loss
from sslkit.methods.moco import MoCo
from sslkit.methods.registry import get_method
from sslkit.models.backbones import build_backbone
from tests.conftest import step_context

SIDE = 16
INFO = DataInfo("toy", num_classes=2, image_size=SIDE, channels=3, mean=(0.5,) * 3,
                std=(0.5,) * 3, num_samples=32)  # fmt: skip

pytestmark = pytest.mark.usefixtures("one_thread")


def _unit(rows: int, dim: int = 6, seed: int = 0) -> torch.Tensor:
    return F.normalize(torch.randn(rows, dim, generator=torch.Generator().manual_seed(seed)), dim=1)


def test_kmeans_with_more_groups_than_rows_makes_every_row_its_own_group():
    features = _unit(5)
    labels, centroids = batch_kmeans(features, groups=8)
    assert labels.tolist() == [0, 1, 2, 3, 4]
    assert torch.allclose(centroids[:5], features) and torch.equal(centroids[5:], torch.zeros(3, 6))


def test_every_centroid_is_the_mean_of_its_rows():
    features = _unit(20, seed=1)
    labels, centroids = batch_kmeans(features, groups=3, iterations=4)
    for group in range(3):
        members = features[labels == group]
        expected = members.mean(dim=0) if len(members) else torch.zeros(6)
        assert torch.allclose(centroids[group], expected, atol=1e-6)


def test_loss_is_symmetric_zero_for_one_group_and_cross_view_infonce_for_own_groups():
    first, second = _unit(6, seed=2), _unit(6, seed=3)
    t = 0.3
    assert cld_loss(first, second, 4, t).item() == pytest.approx(
        cld_loss(second, first, 4, t).item(), rel=1e-6)
    assert cld_loss(first, second, 1, t).item() == pytest.approx(0.0, abs=1e-7)
    # one group per image: centroids are the rows themselves, targets their own index
    targets = torch.arange(6)
    expected = 0.5 * (F.cross_entropy(first @ second.t() / t, targets)
                      + F.cross_entropy(second @ first.t() / t, targets))  # fmt: skip
    assert cld_loss(first, second, 6, t).item() == pytest.approx(expected.item(), rel=1e-5)


def test_kmeans_by_hand_two_groups():
    """Rows a, a', b, b'; the first K = 2 rows (a, a') seed the groups and b, b' join the
    nearer seed a' (squared distances: b 2.0 vs 0.8, b' 3.2 vs 2.0)."""
    features = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-0.6, 0.8]])
    labels, centroids = batch_kmeans(features, groups=2, iterations=1)
    # distances to seed a=(1,0) and a'=(0.8,0.6): b=(0,1) -> 2 vs 0.8 -> a'; b'=(-.6,.8) -> a'
    assert labels.tolist() == [0, 1, 1, 1]
    assert torch.allclose(centroids[0], features[0])
    assert torch.allclose(centroids[1], features[1:].mean(dim=0))


def _moco_cld(**overrides):
    cls = get_method("moco+cld")
    values = {"dim": 8, "queue_size": 16, "momentum": 0.9, "queries": 2, "cld_groups": 3,
              "cld_dim": 8} | overrides  # fmt: skip
    torch.manual_seed(0)
    return cls(cls.Config(**values), build_backbone("resnet18"), INFO).train()


def _ctx() -> StepContext:
    return step_context()


def _batch(views: int = 3) -> Batch:
    gen = torch.Generator().manual_seed(1)
    return Batch(views=[torch.randn(6, 3, SIDE, SIDE, generator=gen) for _ in range(views)],
                 indices=torch.arange(6))  # fmt: skip


def test_composed_method_keeps_the_base_and_adds_the_term():
    method = _moco_cld()
    assert isinstance(method, MoCo) and method.name == "moco+cld"
    assert len(method.views(MoCo.default_augment | {"size": SIDE}).crops) == 3
    out = method.training_step(_batch(), _ctx())
    assert set(out) == {"loss", "loss/instance", "loss/cld"}
    expected = out["loss/instance"] + 0.25 * out["loss/cld"]
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-6)


def test_weight_zero_reproduces_the_base_loss_exactly():
    composed = _moco_cld(cld_weight=0.0)
    torch.manual_seed(0)
    base = MoCo(MoCo.Config(dim=8, queue_size=16, momentum=0.9, queries=2),
                build_backbone("resnet18"), INFO).train()  # fmt: skip
    a = composed.training_step(_batch(), _ctx())["loss"]
    b = base.training_step(_batch(), _ctx())["loss"]
    assert a.item() == b.item()


def test_cld_gradient_reaches_backbone_and_group_head_but_not_the_instance_head():
    method = _moco_cld()
    views = _batch().views[:2]
    representations = [method.backbone(v) for v in views]
    recorded = Recorded(representations=representations)
    method.addons["cld"].terms(recorded, _batch(), _ctx())["cld"].backward()
    assert all(p.grad is None for p in method.online.head.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0
               for p in method.addons["cld"].group_head.parameters())  # fmt: skip
    assert method.backbone.conv1.weight.grad.abs().sum() > 0


def test_the_host_must_compute_two_online_views():
    with pytest.raises(BadInput, match="queries=2"):
        _moco_cld(queries=1)
    _moco_cld(queries=1, symmetric=True)  # the symmetric loss has two online views too


def test_unknown_addon_is_bad_input():
    with pytest.raises(BadInput, match="unknown add-on 'xyz'.*cld"):
        get_method("moco+xyz")


class TwoViewToy(Method):
    """A third-party-style base that CLD has never heard of: two online views, cosine loss."""

    name = "toy"

    @dataclass
    class Config:
        scale: float = 1.0

    def online_views(self) -> int:
        return 2

    def training_step(self, batch, ctx):
        a, b = (F.normalize(self.backbone(v), dim=1) for v in batch.views[:2])
        loss = self.config.scale * (1 - (a * b).sum(dim=1)).mean()
        return {"loss": loss, "loss/align": loss.detach()}


def test_a_foreign_base_takes_cld_without_either_knowing_the_other():
    cls = compose(TwoViewToy, [CLD])
    assert cls.name == "toy+cld"
    config = cls.Config(cld_groups=2, cld_head="norm_linear")
    method = cls(config, build_backbone("resnet18"), INFO).train()
    out = method.training_step(_batch(2), _ctx())
    assert set(out) == {"loss", "loss/align", "loss/cld"}
    assert out["loss"].item() == pytest.approx((out["loss/align"] + 0.25 * out["loss/cld"]).item(),
                                               rel=1e-6)  # fmt: skip


def test_npid_hosts_cld_with_two_views():
    """npid+cld: NPID's two views (queries=2) feed CLD; one view is refused with the fix."""
    cls = get_method("npid+cld")
    values = {"dim": 8, "nce_k": 0, "queries": 2, "cld_groups": 3, "cld_dim": 8}
    torch.manual_seed(0)
    method = cls(cls.Config(**values), build_backbone("resnet18"), INFO).train()
    out = method.training_step(_batch(2), _ctx())
    assert "loss/cld" in out and out["loss/cld"].item() > 0
    base = {k: v for k, v in out.items() if k not in ("loss", "loss/cld")}
    assert out["loss"].item() == pytest.approx(
        sum(v.item() for v in base.values()) + 0.25 * out["loss/cld"].item(), rel=1e-5)
    with pytest.raises(BadInput, match="two|2"):
        cls(cls.Config(**(values | {"queries": 1})), build_backbone("resnet18"), INFO)
