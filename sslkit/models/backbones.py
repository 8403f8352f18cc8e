"""Backbones: torchvision ResNets with the stem adapted to the image size.

Every backbone keeps torchvision's parameter names (``conv1``, ``bn1``, ``layer1..4``) and
has ``fc = Identity``, so its state dict loads into torchvision and detectron2 tooling.

| arch                | stem                                        | use                    |
|---------------------|---------------------------------------------|------------------------|
| ``resnet18/50``     | 7x7 stride-2 conv + max-pool (ImageNet)     | >= 96 px images        |
| ``resnet18-cifar``  | 3x3 stride-1 conv, no max-pool (CIFAR)      | 32 px, 16x the compute |
| ``resnet18-small``  | 3x3 stride-1 conv + max-pool                | 28-32 px, 4x the compute|
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from sslkit.errors import BadInput


def _resnet(depth: int, stem: str, width: int = 64) -> nn.Module:
    """A torchvision ResNet of ``depth`` with the named stem and ``fc`` removed."""
    from torchvision import models  # imported here: torchvision costs ~2 s to import

    builder = {18: models.resnet18, 34: models.resnet34, 50: models.resnet50}[depth]
    net = builder(weights=None, width_per_group=64) if depth == 50 else builder(weights=None)
    if stem in ("cifar", "small"):
        net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
    if stem == "cifar":
        net.maxpool = nn.Identity()
    net.feature_dim = net.fc.in_features
    net.fc = nn.Identity()
    return net


ARCHS: dict[str, Callable[[], nn.Module]] = {
    "resnet18": lambda: _resnet(18, "imagenet"),
    "resnet34": lambda: _resnet(34, "imagenet"),
    "resnet50": lambda: _resnet(50, "imagenet"),
    "resnet18-cifar": lambda: _resnet(18, "cifar"),
    "resnet50-cifar": lambda: _resnet(50, "cifar"),
    "resnet18-small": lambda: _resnet(18, "small"),
    "resnet50-small": lambda: _resnet(50, "small"),
}


def build_backbone(arch: str) -> nn.Module:
    """Build a backbone by name; its output dimension is ``backbone.feature_dim``."""
    if arch not in ARCHS:
        raise BadInput(f"unknown architecture '{arch}': known are {', '.join(sorted(ARCHS))}")
    return ARCHS[arch]()


def default_arch(image_size: int) -> str:
    """The backbone that suits an image size: small stem below 64 px, ImageNet stem above."""
    return "resnet18-small" if image_size < 64 else "resnet18" if image_size < 160 else "resnet50"


def infer_arch(state: dict[str, torch.Tensor]) -> str:
    """Guess the arch of a torchvision-named ResNet state dict (depth and stem)."""
    if "conv1.weight" not in state or "layer4.0.conv1.weight" not in state:
        raise BadInput("the checkpoint holds no ResNet encoder (no conv1/layer4 weights)")
    bottleneck = "layer1.0.conv3.weight" in state
    blocks = sum(1 for key in state if key.startswith("layer3.") and key.endswith(".conv1.weight"))
    depth = {(False, 2): 18, (False, 6): 34, (True, 6): 50}.get((bottleneck, blocks))
    if depth is None:
        raise BadInput("unsupported ResNet depth in checkpoint: pass --arch explicitly")
    small_stem = state["conv1.weight"].shape[-1] == 3
    return f"resnet{depth}" + ("-small" if small_stem else "")
