"""Projection heads (Linear, MoCo v2 MLP) on top of a backbone's pooled feature."""

from __future__ import annotations

from torch import nn


def projection_head(
    in_dim: int, out_dim: int, hidden_dim: int | None = None, batch_norm: bool = False
) -> nn.Module:
    """``Linear(in, out)``, or MoCo v2's MLP ``Linear(in, hidden) -> ReLU -> Linear(hidden, out)``.

    By default both linears carry a bias and there is no BatchNorm (MoCo v2, PCL v2, HCSC).
    ``batch_norm=True`` puts a BatchNorm after the hidden linear (SimCLR / MoCo v3 style),
    which makes small-data runs learn faster. ``hidden_dim=None`` gives the single linear
    layer of MoCo v1 / PCL v1 / NPID.
    """
    if hidden_dim is None:
        return nn.Linear(in_dim, out_dim)
    if batch_norm:
        return nn.Sequential(
            nn.Linear(in_dim, hidden_dim, bias=False), nn.BatchNorm1d(hidden_dim),
            nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim),
        )  # fmt: skip
    return nn.Sequential(
        nn.Linear(in_dim, hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim)
    )


class EncoderWithHead(nn.Module):
    """``backbone`` followed by ``head``: image batch -> un-normalised embedding."""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, images):
        return self.head(self.backbone(images))
