"""ConIC: consistent instance classification (Meng et al.), no official code.

Every training image n is a class with a unit-norm classifier weight ``w_n``; both
views' normalised 128-d features ``x^k_n`` are classified among all N images at
temperature τ, and the two views are pulled together by the consistency term:

    L = mean over the 2b (image, view) of -log softmax_n(W x^k / τ)
        + α · mean over the b images of (1 - <x^1_n, x^2_n>)^2

(the paper's ``L_s + α L_c`` divided by N·K). The weights are stored
unconstrained (``u_n``) and normalised in the forward (``w_n = u_n / |u_n|``), trained by
SGD with momentum and weight decay like the network. ``classifier: sampled`` keeps only
``pool_size`` rows on the device (:class:`~sslkit.nn.sampled_classifier.SampledClassifier`:
the batch's rows are brought in FIFO, the rest are updated lazily in closed form) and
approximates the denominator by

    exp(w_n·x/τ) + β Σ_{j in pool, j != n} exp(w_j·x/τ),   β = (N - 1) / M

with M the number of pool rows in the sum (P - 1: the own row is excluded by default, as
eq. 11; ``include_own_in_pool`` counts it, M = P). The paper writes β = (N - 1)/P; the two
differ by 1/P, and this M makes a pool of all N rows give exactly the full loss.

Choices the paper leaves open: SimCLR's head ``Linear(2048)-BN-ReLU-
Linear(128)-BN`` without biases; rows initialised N(0, 1); a replicated classifier under
DDP (its gradient is averaged like any parameter's; no row sharding — use the sampled
classifier for large N); BatchNorm synchronised across CUDA processes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sslkit.data.base import DataInfo
from sslkit.data.views import ViewSpec, view_spec_from_config
from sslkit.distributed import all_gather_concat
from sslkit.errors import BadInput
from sslkit.methods.base import COMMON_AUGMENT, Batch, Method, StepContext, hp
from sslkit.nn.heads import mlp_head
from sslkit.nn.sampled_classifier import SampledClassifier

CLASSIFIERS = ("full", "sampled")


def consistency_loss(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """``mean_n (1 - <x1_n, x2_n>)^2`` of two views' unit features (both get gradient)."""
    return (1.0 - (first * second).sum(dim=1)).pow(2).mean()


def full_classification_loss(features: torch.Tensor, weights: torch.Tensor,
                             targets: torch.Tensor,
                             temperature: float) -> torch.Tensor:  # fmt: skip
    """Mean N-way cross-entropy of unit ``features`` against the normalised ``weights``."""
    logits = features @ F.normalize(weights, dim=1).t() / temperature
    return F.cross_entropy(logits.float(), targets)


def sampled_classification_loss(features: torch.Tensor, pool_weights: torch.Tensor,
                                own_slots: torch.Tensor, temperature: float, beta: float,
                                include_own: bool = False) -> torch.Tensor:  # fmt: skip
    """Mean cross-entropy with the pool-sampled denominator (module docstring).

    Args:
        features: ``b x D`` unit features.
        pool_weights: ``P x D`` unnormalised pool rows (normalised here).
        own_slots: ``b`` pool slot of each feature's own row.
        temperature: τ.
        beta: the factor of the pool sum.
        include_own: count the own row in the pool sum too.
    """
    logits = (features @ F.normalize(pool_weights, dim=1).t() / temperature).float()
    own = logits.gather(1, own_slots[:, None])
    scaled = logits + math.log(beta)
    if include_own:
        return F.cross_entropy(torch.cat([own, scaled], dim=1),
                               torch.zeros_like(own_slots))  # fmt: skip
    scaled = scaled.scatter(1, own_slots[:, None], own)  # the own row without β
    return F.cross_entropy(scaled, own_slots)


class ConIC(Method):
    """ConIC: N-way parametric instance classification plus view consistency."""

    name = "conic"
    description = "ConIC: instance classification with unit weights + view consistency"
    sync_batchnorm = True
    # Appendix C/E: SGD lr 0.06, momentum 0.9, wd 1e-4, cosine, 200 epochs, batch 512
    default_train = {"lr": 0.06, "weight_decay": 1e-4, "momentum": 0.9, "schedule": "cosine",
                     "epochs": 200, "batch_size": 512}  # fmt: skip
    # crops (0.15, 1), flip, jitter (0.8, 0.8, 0.8, 0.2) with p 0.8, grayscale 0.2, blur 0.5
    default_augment = {**COMMON_AUGMENT, "crop_scale": [0.15, 1.0],
                       "jitter": [0.8, 0.8, 0.8, 0.2]}  # fmt: skip
    check_settings = {"hidden_dim": 64}

    @dataclass
    class Config:
        """ConIC hyper-parameters (defaults: the paper's ImageNet recipe)."""

        dim: int = hp(128, "feature dimension (classifier rows)", low=1)
        hidden_dim: int = hp(2048, "projection head hidden width", low=1)
        temperature: float = hp(0.1, "τ of the instance softmax", above=0)
        consistency_weight: float = hp(2.5, "α, the weight of the consistency term")
        classifier: str = hp("full", "full (all N rows on the device) or sampled (a pool)",
                             choices=("full", "sampled"))
        pool_size: int = hp(65536, "sampled: rows in the device pool N'", low=1)
        include_own_in_pool: bool = hp(False, "sampled: the own row also counts in the pool "
                                       "sum")  # fmt: skip
        classifier_init_std: float = hp(1.0, "std of the N(0, std^2) initial rows (the paper "
                                        "leaves it open; small values let a row's first "
                                        "update set its direction)")  # fmt: skip
        classifier_lr_scale: float = hp(1.0, "classifier lr = lr x this")
        classifier_momentum: float = hp(0.9, "classifier SGD momentum")
        classifier_weight_decay: float = hp(1e-4, "classifier weight decay")

    def __init__(self, config: Config, backbone: nn.Module, data_info: DataInfo) -> None:
        super().__init__(config, backbone, data_info)
        _check_config(config, data_info)
        self.head = mlp_head(int(backbone.feature_dim), config.hidden_dim, config.dim,
                             last_bn=True, last_bias=False)  # fmt: skip
        generator = torch.Generator().manual_seed(0)
        num = data_info.num_samples
        if config.classifier == "full":
            rows = torch.randn(num, config.dim, generator=generator) * config.classifier_init_std
            self.classifier = nn.Parameter(rows)
            self.sampled = None
        else:
            self.classifier = None
            self.sampled = SampledClassifier(num, config.dim, config.pool_size,
                                             config.classifier_momentum,
                                             config.classifier_weight_decay, generator,
                                             init_std=config.classifier_init_std)  # fmt: skip

    @property
    def num_samples(self) -> int:
        """N, the number of classes (training images)."""
        return int(self.data_info.num_samples)

    def views(self, augment: dict[str, Any]) -> ViewSpec:
        """Two views of ConIC's augmentation."""
        return view_spec_from_config(augment, self.data_info, count=2)

    def online_views(self) -> int:
        """Both views go through the backbone with gradient."""
        return 2

    def embedding_head(self) -> nn.Module:
        """The projection head."""
        return self.head

    def embedding_dim(self) -> int:
        """The feature dimension."""
        return int(self.config.dim)

    def param_groups(self) -> list[dict[str, Any]]:
        """The network; the classifier with its own lr scale, momentum and weight decay.

        The sampled pool is registered at lr 0 (the engine's AMP scaler unscales its
        gradient); :meth:`after_optimizer_step` applies its SGD.
        """
        config = self.config
        classifier = self.classifier if self.sampled is None else self.sampled.pool_weight
        network = [p for p in self.parameters() if p.requires_grad and p is not classifier]
        group: dict[str, Any] = {"params": [classifier], "lr_scale": config.classifier_lr_scale,
                                 "momentum": config.classifier_momentum,
                                 "weight_decay": config.classifier_weight_decay}  # fmt: skip
        if self.sampled is not None:
            group = {"params": [classifier], "lr_scale": 0.0, "fixed_lr": True,
                     "momentum": 0.0, "weight_decay": 0.0}  # fmt: skip
        return [{"params": network}, group]

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Unit 128-d features ``x̃``."""
        return F.normalize(self.head(self.backbone(images)), dim=1)

    def classification_loss(self, features: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        """ℓ_s averaged over the rows of ``features`` (full or pool-sampled softmax)."""
        config = self.config
        if self.sampled is None:
            return full_classification_loss(features, self.classifier, indices,
                                            config.temperature)  # fmt: skip
        pool = self.sampled.pool_size - (0 if config.include_own_in_pool else 1)
        beta = (self.num_samples - 1) / max(pool, 1)
        return sampled_classification_loss(features, self.sampled.pool_weight,
                                           self.sampled.slots(indices), config.temperature,
                                           beta, config.include_own_in_pool)  # fmt: skip

    def training_step(self, batch: Batch, ctx: StepContext) -> dict[str, torch.Tensor]:
        """ℓ_s over both views plus α times the consistency of the two views."""
        if self.sampled is not None:
            self.sampled.bring_in(all_gather_concat(batch.indices))
        first, second = (self.features(view) for view in batch.views[:2])
        indices = batch.indices
        classification = self.classification_loss(torch.cat([first, second]),
                                                   torch.cat([indices, indices]))  # fmt: skip
        consistency = consistency_loss(first, second)
        loss = classification + self.config.consistency_weight * consistency
        return {"loss": loss, "loss/classification": classification.detach(),
                "loss/consistency": consistency.detach()}  # fmt: skip

    def after_optimizer_step(self, ctx: StepContext) -> None:
        """The sampled pool's SGD step (the lazily updated rows advance with it)."""
        if self.sampled is not None:
            self.sampled.sgd_step(ctx.lr * self.config.classifier_lr_scale)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """The unit 128-d feature (``--layer head``)."""
        return self.features(images)

    def classifier_weights(self) -> torch.Tensor:
        """All N unit classifier rows as of now (CPU for the sampled classifier)."""
        if self.sampled is None:
            return F.normalize(self.classifier.detach(), dim=1)
        return F.normalize(self.sampled.full_weights()[0], dim=1)


def _check_config(config: ConIC.Config, info: DataInfo) -> None:
    """Settings ConIC cannot train with are bad input."""
    if info.num_samples < 2:
        raise BadInput("conic needs the number of training images N (>= 2) to size its "
                       "classifier, but the data info says "
                       f"{info.num_samples}")  # fmt: skip
    if config.classifier not in CLASSIFIERS:
        raise BadInput(f"conic: method.classifier must be one of {', '.join(CLASSIFIERS)}")
    if config.classifier_init_std <= 0:
        raise BadInput("conic: method.classifier_init_std must be > 0")
    if config.temperature <= 0 or config.consistency_weight < 0 or config.dim < 1:
        raise BadInput("conic: method.temperature must be > 0, method.consistency_weight "
                       ">= 0 and method.dim >= 1")  # fmt: skip
    if config.classifier == "sampled" and config.pool_size < 2:
        raise BadInput("conic: method.pool_size must be at least 2 (and hold a global batch)")
