"""Backbones: torchvision ResNets with the stem adapted to the image size.

Every backbone keeps torchvision's parameter names (``conv1``, ``bn1``, ``layer1..4``) and
has ``fc = Identity``, so its state dict loads into torchvision and detectron2 tooling.

| arch                | stem                                        | use                    |
|---------------------|---------------------------------------------|------------------------|
| ``resnet18/50``     | 7x7 stride-2 conv + max-pool (ImageNet)     | >= 96 px images        |
| ``resnet18-cifar``  | 3x3 stride-1 conv, no max-pool (CIFAR)      | 32 px, 16x the compute |
| ``resnet18-small``  | 3x3 stride-1 conv + max-pool                | 28-32 px, 4x the compute|
| ``resnet18-w32``    | ImageNet stem, half the channels (32..256)  | CPU budgets, 1/4 compute|

``-wN`` sets the channels of the first stage to N (torchvision: 64), every later stage
doubling as usual; the parameter names stay torchvision's, only the shapes change.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import torch
from torch import nn

from sslkit.errors import BadInput


def _resnet(depth: int, stem: str, width: int = 64) -> nn.Module:
    """A torchvision ResNet of ``depth`` with the named stem, ``width`` channels in the
    first stage, and ``fc`` removed."""
    from torchvision import models  # imported here: torchvision costs ~2 s to import

    builder = {18: models.resnet18, 34: models.resnet34, 50: models.resnet50}[depth]
    net = builder(weights=None, width_per_group=64) if depth == 50 else builder(weights=None)
    if width != 64:
        _rebuild_stages(net, width)
    if stem in ("cifar", "small"):
        net.conv1 = nn.Conv2d(3, width, kernel_size=3, stride=1, padding=1, bias=False)
        nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
    if stem == "cifar":
        net.maxpool = nn.Identity()
    net.feature_dim = net.fc.in_features
    net.fc = nn.Identity()
    return net


def _rebuild_stages(net: nn.Module, width: int) -> None:
    """Replace the stem and the four stages of a torchvision ResNet by ``width``-wide ones
    (stages ``width``, 2x, 4x, 8x), initialised as torchvision initialises them."""
    block = type(net.layer1[0])
    blocks = [len(net.layer1), len(net.layer2), len(net.layer3), len(net.layer4)]
    net.inplanes = width
    net.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
    net.bn1 = nn.BatchNorm2d(width)
    for stage, count in enumerate(blocks):
        layer = net._make_layer(block, width * 2**stage, count, stride=1 if stage == 0 else 2)
        setattr(net, f"layer{stage + 1}", layer)
    net.fc = nn.Linear(width * 8 * block.expansion, net.fc.out_features)
    for module in net.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


ARCHS: dict[str, Callable[[], nn.Module]] = {
    "resnet18": lambda: _resnet(18, "imagenet"),
    "resnet34": lambda: _resnet(34, "imagenet"),
    "resnet50": lambda: _resnet(50, "imagenet"),
    "resnet18-cifar": lambda: _resnet(18, "cifar"),
    "resnet50-cifar": lambda: _resnet(50, "cifar"),
    "resnet18-small": lambda: _resnet(18, "small"),
    "resnet50-small": lambda: _resnet(50, "small"),
    "resnet18-w32": lambda: _resnet(18, "imagenet", width=32),
    "resnet18-small-w32": lambda: _resnet(18, "small", width=32),
    "resnet18-cifar-w32": lambda: _resnet(18, "cifar", width=32),
}
_ARCH_NAME = re.compile(r"resnet(?P<depth>18|34|50)(-(?P<stem>cifar|small))?(-w(?P<width>\d+))?")


def build_backbone(arch: str) -> nn.Module:
    """Build a backbone by name; its output dimension is ``backbone.feature_dim``.

    Besides the named :data:`ARCHS`, any ``resnet{18,34,50}[-cifar|-small][-wN]`` with
    8 <= N <= 128 is accepted (e.g. ``resnet18-cifar-w16``).
    """
    if arch in ARCHS:
        return ARCHS[arch]()
    found = _ARCH_NAME.fullmatch(arch)
    width = int(found.group("width") or 64) if found else 0
    if found is None or not 8 <= width <= 128:
        raise BadInput(f"unknown architecture '{arch}': known are {', '.join(sorted(ARCHS))}, "
                       "or resnet{18,34,50}[-cifar|-small][-wN] with N in 8..128")  # fmt: skip
    return _resnet(int(found.group("depth")), found.group("stem") or "imagenet", width)


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
    width = state["conv1.weight"].shape[0]
    return (f"resnet{depth}" + ("-small" if small_stem else "")
            + (f"-w{width}" if width != 64 else ""))  # fmt: skip


@torch.no_grad()
def zero_init_residual(backbone: nn.Module) -> None:
    """Zero the last BatchNorm scale of every residual block (torchvision's
    ``zero_init_residual=True``, used by SimSiam and BYOL): each block starts as identity."""
    from torchvision.models.resnet import BasicBlock, Bottleneck

    for module in backbone.modules():
        if isinstance(module, Bottleneck):
            module.bn3.weight.zero_()
        elif isinstance(module, BasicBlock):
            module.bn2.weight.zero_()
