"""SimSiam (Chen & He, CVPR 2021): siamese prediction with a stop-gradient, no negatives.

Two views go through one encoder (backbone + projector); a predictor maps one view's
projection onto the other's, and the loss is the negative cosine similarity with the
target side detached, symmetrised:

    L = 1/2 D(p1, sg(z2)) + 1/2 D(p2, sg(z1)),   D(p, z) = -<p/|p|, z/|z|>

It follows the authors' code (facebookresearch/simsiam). ResNet with
``zero_init_residual``; projector ``Linear-BN-ReLU-Linear-BN-ReLU-Linear-BN(no affine)``
whose last linear bias is frozen; predictor ``Linear-BN-ReLU-Linear``; the predictor's
lr is fixed (``fix_pred_lr``). With ``multi_crop`` the loss is the mean of D over the
directed crop pairs of :mod:`sslkit.methods.multicrop` (SimSiam-LoGo's ``L_gg + L_lg``;
``crop_pairs: all`` is the SwAV-style 4-crop baseline).
:class:`sslkit.methods.byol.BYOL` is the same class with an EMA target network.

Known difference: BatchNorm is synchronised across processes on CUDA only
(``nn.SyncBatchNorm`` has no CPU kernel); on CPU processes each BN sees its local batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sslkit.data.base import DataInfo
from sslkit.data.views import ViewSpec, view_spec_from_config
from sslkit.errors import BadInput
from sslkit.methods.base import Batch, Method, StepContext, hp
from sslkit.methods.multicrop import (
    MultiCropConfig,
    check_multi_crop,
    crop_pairs,
    multi_crop_views,
    pair_term_means,
)
from sslkit.models.backbones import zero_init_residual
from sslkit.nn.heads import mlp_head


def negative_cosine(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """SimSiam's ``D(p, z) = -mean_i <p_i/|p_i|, z_i/|z_i|>``; the target is detached here.

    Args:
        prediction: ``B x D`` predictor outputs (with gradient).
        target: ``B x D`` projections of the other view (no gradient reaches them).
    Returns:
        A scalar in [-1, 1]; -1 when every prediction points along its target.
    """
    return -(F.normalize(prediction, dim=1) * F.normalize(target.detach(), dim=1)).sum(1).mean()


class SimSiam(Method):
    """SimSiam: encoder + projector, a predictor, stop-gradient on the target side."""

    name = "simsiam"
    description = "SimSiam: siamese prediction with stop-gradient, no negatives (Chen & He 2021)"
    sync_batchnorm = True
    loss_scale = 1.0  # the loss is loss_scale x the mean of the pair losses
    # ImageNet README recipe: SGD lr 0.05 x batch / 256, wd 1e-4, cosine, 100 epochs, 512
    default_train = {"lr": 0.05, "lr_scaling": "linear", "weight_decay": 1e-4, "momentum": 0.9,
                     "schedule": "cosine", "epochs": 100, "batch_size": 512}  # fmt: skip
    check_settings = {"dim": 64, "pred_dim": 32}

    @dataclass
    class Config(MultiCropConfig):
        """SimSiam hyper-parameters (defaults: the ImageNet recipe)."""

        dim: int = hp(2048, "projector output dimension", low=1)
        hidden_dim: int = hp(0, "projector hidden width (0 = the backbone's width)")
        proj_layers: int = hp(3, "linear layers of the projector (SimSiam CIFAR: 2)", low=1)
        pred_dim: int = hp(512, "predictor hidden width (the bottleneck)", low=1)
        fix_pred_lr: bool = hp(True, "keep the predictor at its initial lr (no decay)")
        zero_init_residual: bool = hp(True, "zero the last BN scale of every residual block")

    def __init__(self, config: Config, backbone: nn.Module, data_info: DataInfo) -> None:
        super().__init__(config, backbone, data_info)
        check_multi_crop(self.name, config)
        if config.dim < 1 or config.pred_dim < 1 or config.proj_layers < 2:
            raise BadInput(f"{self.name}: method.dim and method.pred_dim must be >= 1 and "
                           "method.proj_layers >= 2")  # fmt: skip
        if config.zero_init_residual:
            zero_init_residual(backbone)
        self.projector = self.build_projector(int(backbone.feature_dim))
        self.predictor = self.build_predictor()

    # -- architecture (BYOL replaces these) ------------------------------------------------
    def build_projector(self, width: int) -> nn.Module:
        """SimSiam's projector; the last linear's bias is frozen (a BN without affine follows)."""
        config = self.config
        projector = mlp_head(width, config.hidden_dim or width, config.dim,
                             layers=config.proj_layers, last_bn=True,
                             last_bn_affine=False)  # fmt: skip
        projector[-2].bias.requires_grad_(False)
        return projector

    def build_predictor(self) -> nn.Module:
        """SimSiam's bottleneck predictor ``Linear-BN-ReLU-Linear``."""
        return mlp_head(self.config.dim, self.config.pred_dim, self.config.dim)

    def targets(self, views: list[torch.Tensor], projections: list[torch.Tensor | None],
                wanted: set[int], ctx: StepContext) -> dict[int, torch.Tensor]:  # fmt: skip
        """Target projections of the ``wanted`` views: the online ones, detached."""
        return {index: projections[index].detach() for index in wanted}

    def pair_loss(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The loss of one directed pair: ``D(p, z)``."""
        return negative_cosine(prediction, target)

    # -- the plugin contract ---------------------------------------------------------------
    def views(self, augment: dict[str, Any]) -> ViewSpec:
        """Two views of one augmentation, or the multi-crop views."""
        if self.config.multi_crop:
            return multi_crop_views(augment, self.data_info, self.config.local_crops)
        return view_spec_from_config(augment, self.data_info, count=2)

    def online_views(self) -> int:
        """Every view goes through the online encoder."""
        return 2 + self.local_views()

    def local_views(self) -> int:
        """The local crops (``multi_crop``), last in the batch."""
        return len(self.config.local_crops) if self.config.multi_crop else 0

    def embedding_head(self) -> nn.Module:
        """The projector."""
        return self.projector

    def embedding_dim(self) -> int:
        """The projector's output dimension."""
        return int(self.config.dim)

    def param_groups(self) -> list[dict[str, Any]]:
        """Encoder + projector, and the predictor (fixed lr with ``fix_pred_lr``)."""
        predictor = {id(p) for p in self.predictor.parameters()}
        encoder = [p for p in self.parameters() if p.requires_grad and id(p) not in predictor]
        return [{"params": encoder},
                {"params": [p for p in self.predictor.parameters() if p.requires_grad],
                 "fixed_lr": self.config.fix_pred_lr}]  # fmt: skip

    def training_step(self, batch: Batch, ctx: StepContext) -> dict[str, torch.Tensor]:
        """Mean of the pair loss over the directed view pairs (the symmetric loss for two)."""
        views = batch.views
        projections = [self.projector(self.backbone(view)) for view in views]
        predictions = [self.predictor(z) for z in projections]
        pairs = crop_pairs(len(views), self.config.crop_pairs)
        targets = self.targets(views, projections, {t for _, t in pairs}, ctx)
        terms = [self.pair_loss(predictions[q], targets[t]) for q, t in pairs]
        loss = self.loss_scale * torch.stack(terms).mean()
        logged = {"loss": loss, "loss/similarity": loss.detach()}
        if self.config.multi_crop:
            means = pair_term_means(pairs, [term.detach() for term in terms])
            logged.update({f"loss/{name}": value for name, value in means.items()})
        return logged

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """The normalised projection (``--layer head``)."""
        return F.normalize(self.projector(self.backbone(images)), dim=1)
