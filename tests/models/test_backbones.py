"""Backbones: torchvision naming, feature widths, arch inference from a state dict."""

from __future__ import annotations

import pytest
import torch

from sslkit.errors import BadInput
from sslkit.models.backbones import ARCHS, build_backbone, infer_arch, zero_init_residual


@pytest.mark.parametrize("arch", ["resnet18", "resnet18-small", "resnet18-w32",
                                  "resnet18-small-w32", "resnet50"])  # fmt: skip
def test_arch_is_recovered_from_the_state_dict(arch):
    net = build_backbone(arch)
    assert infer_arch(net.state_dict()) == arch


def test_half_width_resnet_keeps_torchvision_names_and_halves_the_channels():
    from torchvision.models import resnet18

    narrow, full = build_backbone("resnet18-w32"), resnet18()
    full_keys = {k for k in full.state_dict() if not k.startswith("fc.")}
    assert set(narrow.state_dict()) == full_keys
    assert narrow.feature_dim == 256
    assert narrow.state_dict()["layer4.1.conv2.weight"].shape == (256, 256, 3, 3)
    assert narrow(torch.randn(2, 3, 28, 28)).shape == (2, 256)
    # a freshly built narrow net is initialised like torchvision's (unit BN scales)
    assert torch.all(narrow.layer2[0].bn1.weight == 1)


def test_zero_init_residual_zeroes_the_last_bn_of_every_block():
    net = build_backbone("resnet18")
    zero_init_residual(net)
    assert all(float(block.bn2.weight.detach().abs().sum()) == 0
               for layer in (net.layer1, net.layer2, net.layer3, net.layer4) for block in layer)


def test_unknown_arch_lists_the_known_ones():
    with pytest.raises(BadInput, match="known are") as error:
        build_backbone("vgg11")
    assert all(name in str(error.value) for name in ARCHS)
