"""Projection heads: NormLinear cosines, NormMLP, build_head and the ``head`` hyper-parameter."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sslkit.data.base import DataInfo
from sslkit.errors import BadInput
from sslkit.methods.hcsc import HCSC
from sslkit.methods.moco import MoCo
from sslkit.methods.npid import NPID
from sslkit.models.backbones import build_backbone
from sslkit.nn.heads import HEAD_KINDS, NormLinear, NormMLP, build_head

INFO = DataInfo("toy", num_classes=2, image_size=16, channels=3, mean=(0.5,) * 3,
                std=(0.5,) * 3, num_samples=10)  # fmt: skip

pytestmark = pytest.mark.usefixtures("one_thread")


def _x(rows: int = 5, dim: int = 6, seed: int = 0) -> torch.Tensor:
    return torch.randn(rows, dim, generator=torch.Generator().manual_seed(seed))


def test_norm_linear_outputs_are_cosine_similarities():
    """NormLinear(x) = normalize(x) @ normalize(W).T, in [−1, 1], no bias."""
    torch.manual_seed(0)
    layer = NormLinear(6, 4)
    x = _x()
    expected = F.normalize(x) @ F.normalize(layer.weight).T
    torch.testing.assert_close(layer(x), expected)
    cosines = torch.stack([F.cosine_similarity(x, w[None], dim=1) for w in layer.weight], dim=1)
    torch.testing.assert_close(layer(x), cosines)
    assert layer(x).abs().max() <= 1.0 + 1e-6
    assert [name for name, _ in layer.named_parameters()] == ["weight"]
    assert layer.weight.shape == (4, 6)  # nn.Linear's layout: out x in


def test_norm_linear_init_unit_rows_and_scale_invariance():
    """Rows start at unit norm; scaling x by c > 0 or rescaling a weight row changes nothing."""
    torch.manual_seed(1)
    layer = NormLinear(6, 4)
    torch.testing.assert_close(layer.weight.norm(dim=1), torch.ones(4))
    assert layer.weight.abs().max() <= 1.0
    x = _x(seed=2)
    out = layer(x)
    torch.testing.assert_close(layer(3.5 * x), out)
    with torch.no_grad():
        layer.weight[2] *= 7.0
    torch.testing.assert_close(layer(x), out)


def test_norm_linear_gradient_reaches_weight_and_input():
    """Gradients flow into the weight and the input."""
    layer = NormLinear(6, 4)
    x = _x().requires_grad_()
    layer(x).sum().backward()
    assert layer.weight.grad is not None and x.grad is not None


def test_norm_mlp_layout_and_shape():
    """NormMLP = Linear(in, hidden, bias) -> ReLU -> NormLinear(hidden, out); B x out in [−1, 1]."""
    head = NormMLP(6, 10, 3)
    assert isinstance(head[0], nn.Linear) and head[0].bias is not None
    assert head[0].out_features == 10 and isinstance(head[1], nn.ReLU)
    assert isinstance(head[2], NormLinear) and head[2].weight.shape == (3, 10)
    out = head(_x())
    assert out.shape == (5, 3) and out.abs().max() <= 1.0 + 1e-6
    with_bn = NormMLP(6, 10, 3, batch_norm=True)
    assert isinstance(with_bn[1], nn.BatchNorm1d) and with_bn[0].bias is None
    assert isinstance(with_bn[-1], NormLinear)


@pytest.mark.parametrize("kind, expected", [("linear", nn.Linear), ("mlp", nn.Sequential),
                                            ("norm_linear", NormLinear),
                                            ("norm_mlp", NormMLP)])  # fmt: skip
def test_build_head_kinds(kind, expected):
    """Every kind builds its module, of output size out_dim; MLP hidden = in_dim by default."""
    head = build_head(kind, 6, 3)
    assert type(head) is expected
    assert head(_x()).shape == (5, 3)
    if kind in ("mlp", "norm_mlp"):
        assert head[0].in_features == 6 and head[0].out_features == 6
    assert set(HEAD_KINDS) == {"linear", "mlp", "norm_linear", "norm_mlp"}


def test_build_head_unknown_is_bad_input():
    """An unknown kind names the known ones."""
    with pytest.raises(BadInput, match="norm_mlp"):
        build_head("cosine", 6, 3)


def _moco(cls=MoCo, **overrides):
    torch.manual_seed(0)
    if cls is HCSC:
        overrides = {"num_clusters": [4, 2], **overrides}
    config = cls.Config(dim=8, queue_size=16, **overrides)
    return cls(config, build_backbone("resnet18"), INFO)


def test_moco_auto_head_follows_mlp_and_keeps_state_names():
    """head=auto: mlp=True gives the MoCo v2 MLP, mlp=False v1's Linear; names unchanged."""
    v2 = _moco()
    assert v2.config.head == "auto"
    assert isinstance(v2.online.head, nn.Sequential)
    assert {k for k in v2.state_dict() if k.startswith("online.head.")} == {
        "online.head.0.weight", "online.head.0.bias", "online.head.2.weight",
        "online.head.2.bias"}  # fmt: skip
    assert isinstance(_moco(mlp=False).online.head, nn.Linear)
    with_bn = _moco(head_bn=True).online.head
    assert isinstance(with_bn[1], nn.BatchNorm1d)


@pytest.mark.parametrize("cls", [MoCo, HCSC])
def test_moco_and_hcsc_head_is_selectable(cls):
    """head=norm_linear / norm_mlp in MoCo and its subclass HCSC, in both encoders."""
    method = _moco(cls, head="norm_linear", mlp=True)  # an explicit head wins over mlp
    assert isinstance(method.online.head, NormLinear)
    assert isinstance(method.target.head, NormLinear)
    assert method.online.head.weight.shape == (8, 512)
    method = _moco(cls, head="norm_mlp")
    assert isinstance(method.online.head, NormMLP) and method.online.head[0].out_features == 512
    with torch.no_grad():
        out = method.online.eval()(torch.randn(2, 3, 16, 16))
    assert out.shape == (2, 8) and out.abs().max() <= 1.0 + 1e-6


def test_bad_head_name_is_bad_input():
    """An unknown head in a method config is bad input."""
    with pytest.raises(BadInput):
        _moco(head="nope")


@pytest.mark.parametrize("kind, expected", [("linear", nn.Linear), ("norm_linear", NormLinear),
                                            ("norm_mlp", NormMLP)])  # fmt: skip
def test_npid_head_is_selectable(kind, expected):
    """NPID builds the head its config names; embed() stays unit-norm."""
    torch.manual_seed(0)
    method = NPID(NPID.Config(dim=8, head=kind), build_backbone("resnet18"), INFO).eval()
    assert type(method.online.head) is expected
    with torch.no_grad():
        embedding = method.embed(torch.randn(2, 3, 16, 16))
    torch.testing.assert_close(embedding.norm(dim=1), torch.ones(2))
