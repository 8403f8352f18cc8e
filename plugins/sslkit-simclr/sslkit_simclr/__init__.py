"""SimCLR (Chen et al. 2020) as an sslkit plugin: two views, MLP head, NT-Xent loss.

This package is the template for third-party methods: a :class:`sslkit.plugin.Method`
subclass plus one entry point in ``pyproject.toml``, importing nothing from sslkit but
``sslkit.plugin`` (the stable surface). Under ``torchrun`` every process uses the other
images of its *own* batch as negatives (``2 * (B - 1)`` per anchor, with ``B`` the
per-process batch); embeddings are not gathered across processes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sslkit.plugin import COMMON_AUGMENT, Batch, DataInfo, Method, StepContext, hp

__all__ = ["SimCLR", "nt_xent", "simclr_head"]


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """The NT-Xent loss of SimCLR for two views ``z1``, ``z2`` (each ``B x D``, any norm).

    The ``2B`` embeddings are L2-normalised and stacked as ``z = [z1; z2]``. Row ``i`` of
    ``sim = z z^T / T`` scores anchor ``i`` against every other embedding (the diagonal,
    an embedding with itself, is masked to ``-inf``); its positive is the other view of the
    same image, column ``(i + B) mod 2B``. The loss is the cross-entropy averaged over all
    ``2B`` anchors.
    """
    batch = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2], dim=0), dim=1)
    sim = z @ z.t() / temperature
    self_mask = torch.eye(2 * batch, dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(self_mask, float("-inf"))
    target = (torch.arange(2 * batch, device=z.device) + batch) % (2 * batch)
    return F.cross_entropy(sim, target)


def simclr_head(width: int, dim: int) -> nn.Module:
    """The projection MLP ``Linear(width, width) -> BN1d -> ReLU -> Linear(width, dim)``."""
    return nn.Sequential(
        nn.Linear(width, width, bias=False),  # the BatchNorm that follows supplies the bias
        nn.BatchNorm1d(width),
        nn.ReLU(inplace=True),
        nn.Linear(width, dim),
    )


class SimCLR(Method):
    """SimCLR: two augmented views per image, an MLP head and the NT-Xent loss."""

    name = "simclr"
    description = "SimCLR: in-batch negatives, MLP head, NT-Xent loss (Chen et al. 2020)"
    default_train = {"lr": 0.06, "weight_decay": 1e-4}
    # SimCLR's stronger crops and colour jitter (strength 1.0); the rest is sslkit's common set.
    default_augment = {**COMMON_AUGMENT, "crop_scale": [0.08, 1.0], "jitter": [0.8, 0.8, 0.8, 0.2]}
    # sslkit.testing.check_method's tiny synthetic data: a narrow head is enough
    check_settings = {"dim": 32}

    @dataclass
    class Config:
        """SimCLR hyper-parameters (``--set method.NAME=VALUE``)."""

        dim: int = hp(128, "output dimension of the projection head")
        temperature: float = hp(0.5, "softmax temperature T of the NT-Xent loss")

    def __init__(self, config: Config, backbone: nn.Module, data_info: DataInfo) -> None:
        super().__init__(config, backbone, data_info)
        self.head = simclr_head(backbone.feature_dim, config.dim)

    def project(self, images: torch.Tensor) -> torch.Tensor:
        """Backbone then projection head: images -> un-normalised ``B x dim`` embeddings."""
        return self.head(self.backbone(images))

    def training_step(self, batch: Batch, ctx: StepContext) -> dict[str, torch.Tensor]:
        """Embed both views and return the NT-Xent loss (negatives: this process's batch)."""
        first, second = batch.views[0], batch.views[1]
        loss = nt_xent(self.project(first), self.project(second), self.config.temperature)
        return {"loss": loss, "loss/nt_xent": loss.detach()}

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """The normalised projection-head output (``--layer head``)."""
        return F.normalize(self.project(images), dim=1)

    def embedding_dim(self) -> int:
        """The dimension of :meth:`embed`: the head's output, not the backbone's width."""
        return int(self.config.dim)
