"""MoCo v2 (He et al. 2020; Chen et al. 2020): momentum encoder, key queue, InfoNCE.

Specification: ``shared/methods/moco.md``. v1 is the same class with ``mlp=False`` and
T=0.07; the CIFAR Colab variant is ``symmetric=True`` with ``bn_splits=8``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from sslkit.data.base import DataInfo
from sslkit.engine.distributed import (
    all_gather_concat,
    shuffle_across_ranks,
    unshuffle_across_ranks,
)
from sslkit.methods.base import Batch, Method, StepContext, hp
from sslkit.nn.heads import EncoderWithHead, projection_head
from sslkit.nn.losses import info_nce
from sslkit.nn.momentum import momentum_copy, momentum_update
from sslkit.nn.queue import KeyQueue
from sslkit.nn.split_bn import convert_to_split_bn


class MoCo(Method):
    """MoCo v2: a query encoder, its momentum copy for keys and a FIFO queue of negatives."""

    name = "moco"
    description = "MoCo v2: momentum encoder + queue of negatives, InfoNCE (He et al. 2020)"
    default_train = {"lr": 0.03, "weight_decay": 1e-4, "momentum": 0.9, "schedule": "cosine"}

    @dataclass
    class Config:
        """MoCo hyper-parameters (defaults: the ImageNet MoCo v2 recipe)."""

        dim: int = hp(128, "output dimension of the projection head")
        mlp: bool = hp(True, "MoCo v2 MLP head (hidden = backbone width); False = v1 linear")
        head_bn: bool = hp(False, "BatchNorm in the MLP head (not in MoCo v2; learns faster)")
        queue_size: int = hp(65536, "number of negative keys K in the queue")
        momentum: float = hp(0.999, "momentum m of the key encoder's EMA")
        temperature: float = hp(0.2, "softmax temperature T (v1: 0.07)")
        symmetric: bool = hp(False, "also use view 2 as query (loss is the sum, 2B keys queued)")
        shuffle_bn: bool = hp(True, "shuffle the key batch across processes (multi-process BN)")
        bn_splits: int = hp(1, "BatchNorm over this many chunks of the batch (1-GPU stand-in)")

    def __init__(self, config: Config, backbone: torch.nn.Module, data_info: DataInfo) -> None:
        super().__init__(config, backbone, data_info)
        if config.bn_splits > 1:
            convert_to_split_bn(backbone, config.bn_splits)
        width = backbone.feature_dim
        head = projection_head(width, config.dim, width if config.mlp else None, config.head_bn)
        self.online = EncoderWithHead(backbone, head)
        self.target = momentum_copy(self.online)
        self.queue = KeyQueue(config.queue_size, config.dim)

    @torch.no_grad()
    def keys(self, images: torch.Tensor, ctx: StepContext) -> torch.Tensor:
        """Normalised key embeddings, with shuffle-BN across processes when enabled."""
        if ctx.dist.distributed and self.config.shuffle_bn:
            shuffled, inverse = shuffle_across_ranks(images, ctx.generator)
            keys = F.normalize(self.target(shuffled), dim=1)
            return unshuffle_across_ranks(keys, inverse)
        return F.normalize(self.target(images), dim=1)

    def training_step(self, batch: Batch, ctx: StepContext) -> dict[str, torch.Tensor]:
        """Momentum update, keys, InfoNCE against the queue, then enqueue the keys."""
        first, second = batch.views[0], batch.views[1]
        momentum_update(self.online, self.target, self.config.momentum)
        negatives = self.queue.keys.clone()  # snapshot before this step's push
        query = F.normalize(self.online(first), dim=1)
        key = self.keys(second, ctx)
        loss = info_nce(query, key, negatives, self.config.temperature)
        new_keys, new_ids = key, batch.indices
        if self.config.symmetric:
            query_2 = F.normalize(self.online(second), dim=1)
            key_2 = self.keys(first, ctx)
            loss = loss + info_nce(query_2, key_2, negatives, self.config.temperature)
            new_keys = torch.cat([key, key_2])
            new_ids = torch.cat([batch.indices, batch.indices])
        self.queue.push(all_gather_concat(new_keys), all_gather_concat(new_ids))
        return {"loss": loss, "loss/instance": loss.detach()}

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """The query encoder's normalised projection (``--layer head``)."""
        return F.normalize(self.online(images), dim=1)
