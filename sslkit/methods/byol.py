"""BYOL (Grill et al., NeurIPS 2020): predict an EMA target network's projection.

SimSiam with a momentum target: the online network (backbone + projector + predictor)
predicts the projection of the other view computed by a target network (backbone +
projector) whose weights are an exponential moving average of the online ones, with the
momentum raised along a cosine from ``momentum`` to 1:

    tau_k = 1 - (1 - tau_base) (cos(pi k / K) + 1) / 2      (k: step, K: total steps)

and the symmetrised loss ``l(p1, z2') + l(p2, z1')`` with ``l(p, z) = 2 - 2 cos(p, z)``.
The paper's ImageNet recipe: projector and predictor ``Linear(4096)-BN-ReLU-Linear(256)``,
LARS with lr 0.2 x batch / 256, weight decay 1.5e-6, 10 warm-up epochs, cosine,
tau_base 0.996, and asymmetric views (blur always on view 1 and with p = 0.1 on view 2,
solarisation p = 0.2 on view 2 only). ``target_update_every`` updates the target only
every N steps (BYOL + CLD's setting in the CLD paper: 16). CLD, LoGo and multi-crop plug in
as on SimSiam (:mod:`sslkit.methods.simsiam`); with multi-crop the loss is twice the mean
over the directed crop pairs (= the paper's sum for two views), and the local crops take
view 1's photometric settings.

BYOL follows the BYOL paper (and CLD, which uses it as a base): there is no other method
of sslkit's sources behind it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from sslkit.data.base import DataInfo
from sslkit.data.views import ViewSpec, view_spec_from_config
from sslkit.errors import BadInput
from sslkit.methods.base import COMMON_AUGMENT, StepContext, hp
from sslkit.methods.simsiam import SimSiam, negative_cosine
from sslkit.nn.heads import EncoderWithHead, mlp_head
from sslkit.nn.momentum import momentum_copy, momentum_update


def cosine_momentum(base: float, step: int, total_steps: int) -> float:
    """BYOL's target momentum at ``step`` of ``total_steps``: ``base`` rising to 1."""
    progress = min(step / max(total_steps, 1), 1.0)
    return 1.0 - (1.0 - base) * (math.cos(math.pi * progress) + 1.0) / 2.0


class BYOL(SimSiam):
    """BYOL: SimSiam's siamese prediction against an EMA target network."""

    name = "byol"
    description = "BYOL: predict a momentum target network's projection (Grill et al. 2020)"
    default_train = {"optimizer": "lars", "lr": 0.2, "lr_scaling": "linear",
                     "weight_decay": 1.5e-6, "momentum": 0.9, "schedule": "cosine",
                     "warmup_epochs": 10, "epochs": 1000, "batch_size": 4096}  # fmt: skip
    # BYOL's augmentation: crops (0.08, 1), jitter (0.4, 0.4, 0.2, 0.1) with p 0.8,
    # grayscale 0.2, blur 1.0 / 0.1 and solarisation 0.0 / 0.2 on views 1 / 2
    default_augment = {**COMMON_AUGMENT, "crop_scale": [0.08, 1.0],
                       "jitter": [0.4, 0.4, 0.2, 0.1], "blur_prob": 1.0,
                       "second_view_blur_prob": 0.1,
                       "second_view_solarize_prob": 0.2}  # fmt: skip
    loss_scale = 2.0
    check_settings = {"dim": 32, "hidden_dim": 64, "pred_dim": 64}

    @dataclass
    class Config(SimSiam.Config):
        """BYOL hyper-parameters (defaults: the paper's ImageNet recipe)."""

        dim: int = hp(256, "projector (and predictor) output dimension", low=1)
        hidden_dim: int = hp(4096, "projector hidden width", low=1)
        proj_layers: int = hp(2, "linear layers of the projector", low=1)
        pred_dim: int = hp(4096, "predictor hidden width", low=1)
        fix_pred_lr: bool = hp(False, "keep the predictor at its initial lr (no decay)")
        momentum: float = hp(0.996, "tau_base: the target momentum at the first step", high=1)
        momentum_schedule: str = hp("cosine", "cosine (tau_base -> 1) or constant",
                                    choices=("cosine", "constant"))
        target_update_every: int = hp(1, "update the target every N steps (BYOL+CLD: 16)", low=1)

    def __init__(self, config: Config, backbone: nn.Module, data_info: DataInfo) -> None:
        super().__init__(config, backbone, data_info)
        if config.momentum_schedule not in ("cosine", "constant") or config.target_update_every < 1:
            raise BadInput("byol: method.momentum_schedule must be cosine or constant and "
                           "method.target_update_every >= 1")  # fmt: skip
        self.target = momentum_copy(EncoderWithHead(self.backbone, self.projector))

    def build_projector(self, width: int) -> nn.Module:
        """``Linear(hidden)-BN-ReLU-Linear(dim)``."""
        return mlp_head(width, self.config.hidden_dim or width, self.config.dim,
                        layers=self.config.proj_layers)  # fmt: skip

    def build_predictor(self) -> nn.Module:
        """``Linear(pred_dim)-BN-ReLU-Linear(dim)``."""
        return mlp_head(self.config.dim, self.config.pred_dim, self.config.dim)

    def views(self, augment: dict[str, Any]) -> ViewSpec:
        """BYOL's asymmetric pair (view 2's own blur and solarisation), or multi-crop."""
        if self.config.multi_crop:
            return super().views(augment)
        first = view_spec_from_config(augment, self.data_info, count=1)
        second_settings = {**augment, "blur_prob": augment["second_view_blur_prob"],
                           "solarize_prob": augment["second_view_solarize_prob"]}  # fmt: skip
        second = view_spec_from_config(second_settings, self.data_info, count=1)
        return ViewSpec(first.crops + second.crops, first.photometric + second.photometric,
                        first.mean, first.std)  # fmt: skip

    @torch.no_grad()
    def targets(self, views, projections, wanted, ctx: StepContext) -> dict[int, torch.Tensor]:
        """The target network's projections of the ``wanted`` views."""
        return {index: self.target(views[index]) for index in wanted}

    def pair_loss(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``2 - 2 cos(p, z)`` averaged over the batch."""
        return 2.0 + 2.0 * negative_cosine(prediction, target)

    def target_momentum(self, ctx: StepContext) -> float:
        """The EMA momentum at this step."""
        if self.config.momentum_schedule == "constant":
            return float(self.config.momentum)
        return cosine_momentum(self.config.momentum, ctx.step, ctx.epochs * ctx.steps_per_epoch)

    @torch.no_grad()
    def update_target(self, ctx: StepContext) -> None:
        """One EMA update of the target network."""
        momentum_update(EncoderWithHead(self.backbone, self.projector), self.target,
                        self.target_momentum(ctx))  # fmt: skip

    def after_optimizer_step(self, ctx: StepContext) -> None:
        """The EMA update, every ``target_update_every`` steps."""
        if (ctx.step + 1) % self.config.target_update_every == 0:
            self.update_target(ctx)
