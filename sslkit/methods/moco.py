"""MoCo v2 (He et al. 2020; Chen et al. 2020): momentum encoder, key queue, InfoNCE.

It follows the authors' released code. v1 is the same class with ``mlp=False`` and
T=0.07; the CIFAR Colab variant is ``symmetric=True`` with ``bn_splits=8``.
``multi_crop=True`` adds local crops (:mod:`sslkit.methods.multicrop`): the loss is the
mean InfoNCE over the directed crop pairs and only the global crops' keys are queued
(MoCo-LoGo's main step).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from sslkit.data.base import DataInfo
from sslkit.data.views import ViewSpec, view_spec_from_config
from sslkit.distributed import (
    all_gather_concat,
    shuffle_across_ranks,
    unshuffle_across_ranks,
)
from sslkit.errors import BadInput
from sslkit.methods.base import Batch, Method, StepContext, hp
from sslkit.methods.multicrop import (
    MultiCropConfig,
    check_multi_crop,
    crop_pairs,
    multi_crop_views,
    pair_term_means,
)
from sslkit.nn.heads import EncoderWithHead, build_head
from sslkit.nn.losses import info_nce
from sslkit.nn.momentum import momentum_copy, momentum_update
from sslkit.nn.queue import KeyQueue
from sslkit.nn.split_bn import convert_to_split_bn


class MoCo(Method):
    """MoCo v2: a query encoder, its momentum copy for keys and a FIFO queue of negatives."""

    name = "moco"
    description = "MoCo v2: momentum encoder + queue of negatives, InfoNCE (He et al. 2020)"
    default_train = {"lr": 0.03, "weight_decay": 1e-4, "momentum": 0.9, "schedule": "cosine"}
    check_settings = {"queue_size": 64}

    @dataclass
    class Config(MultiCropConfig):
        """MoCo hyper-parameters (defaults: the ImageNet MoCo v2 recipe)."""

        dim: int = hp(128, "output dimension of the projection head", low=1)
        mlp: bool = hp(True, "MoCo v2 MLP head (hidden = backbone width); False = v1 linear")
        head_bn: bool = hp(False, "BatchNorm in the MLP head (not in MoCo v2; learns faster)")
        head: str = hp("auto", "projection head: auto (mlp if `mlp` else linear), linear, mlp, "
                       "norm_linear or norm_mlp (CLD's cosine heads)",
                       choices=("auto", "linear", "mlp", "norm_linear", "norm_mlp"))  # fmt: skip
        queue_size: int = hp(65536, "number of negative keys K in the queue", low=1)
        momentum: float = hp(0.999, "momentum m of the key encoder's EMA", high=1)
        temperature: float = hp(0.2, "softmax temperature T (v1: 0.07)", above=0)
        symmetric: bool = hp(False, "also use view 2 as query (loss is the sum, 2B keys queued)")
        queries: int = hp(1, "query views per image against one key view (loss is their mean; "
                          "MoCo + CLD uses 2)", low=1)  # fmt: skip
        shuffle_bn: bool = hp(True, "shuffle the key batch across processes (multi-process BN)")
        bn_splits: int = hp(1, "BatchNorm over this many chunks of the batch (1-GPU stand-in)",
                            low=1)

    def __init__(self, config: Config, backbone: torch.nn.Module, data_info: DataInfo) -> None:
        super().__init__(config, backbone, data_info)
        if config.bn_splits > 1:
            convert_to_split_bn(backbone, config.bn_splits)
        width = backbone.feature_dim
        kind = config.head if config.head != "auto" else "mlp" if config.mlp else "linear"
        head = build_head(kind, width, config.dim, hidden_dim=width, batch_norm=config.head_bn)
        self.online = EncoderWithHead(backbone, head)
        self.target = momentum_copy(self.online)
        self.queue = KeyQueue(config.queue_size, config.dim)
        if config.queries < 1 or (config.queries > 1 and (config.symmetric or config.multi_crop)):
            raise BadInput(f"{self.name}: method.queries must be >= 1, and 1 with "
                           "method.symmetric or method.multi_crop")  # fmt: skip
        check_multi_crop(self.name, config)

    def views(self, augment: dict[str, Any]) -> ViewSpec:
        """``queries`` query views then the key view (two views by default); with
        ``multi_crop`` two global crops then the local crops."""
        if self.config.multi_crop:
            return multi_crop_views(augment, self.data_info, self.config.local_crops)
        return view_spec_from_config(augment, self.data_info, count=self.config.queries + 1)

    def online_views(self) -> int:
        """Query views through the online encoder per step (two with ``symmetric``)."""
        if self.config.multi_crop:
            return 2 + len(self.config.local_crops)
        return 2 if self.config.symmetric else self.config.queries

    def local_views(self) -> int:
        """The local crops (``multi_crop``), last in the batch."""
        return len(self.config.local_crops) if self.config.multi_crop else 0

    def embedding_head(self) -> torch.nn.Module:
        """The query encoder's projection head."""
        return self.online.head

    def embedding_dim(self) -> int:
        """The projection's output dimension."""
        return int(self.config.dim)

    @torch.no_grad()
    def update_target(self, ctx: StepContext) -> None:
        """One momentum update of the key encoder."""
        momentum_update(self.online, self.target, self.config.momentum)

    @torch.no_grad()
    def keys(self, images: torch.Tensor, ctx: StepContext) -> torch.Tensor:
        """Normalised key embeddings, with shuffle-BN across processes when enabled."""
        if ctx.dist.distributed and self.config.shuffle_bn:
            shuffled, inverse = shuffle_across_ranks(images, ctx.generator)
            keys = F.normalize(self.target(shuffled), dim=1)
            return unshuffle_across_ranks(keys, inverse)
        return F.normalize(self.target(images), dim=1)

    def training_step(self, batch: Batch, ctx: StepContext) -> dict[str, torch.Tensor]:
        """Momentum update, keys, InfoNCE against the queue, then enqueue the keys.

        With ``queries`` > 1 the first views are all queries of the last view's key and the
        loss is their mean (CLD's MoCo base); the queue gets the key once.
        """
        if self.config.multi_crop:
            return self._multi_crop_step(batch, ctx)
        self.update_target(ctx)
        negatives = self.queue.keys.clone()  # snapshot before this step's push
        if self.config.queries > 1:
            *query_views, key_view = batch.views
            key = self.keys(key_view, ctx)
            loss = torch.stack([
                info_nce(F.normalize(self.online(view), dim=1), key, negatives,
                         self.config.temperature)
                for view in query_views]).mean()  # fmt: skip
            self.queue.push(all_gather_concat(key), all_gather_concat(batch.indices))
            return {"loss": loss, "loss/instance": loss.detach()}
        first, second = batch.views[0], batch.views[1]
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

    def _multi_crop_step(self, batch: Batch, ctx: StepContext) -> dict[str, torch.Tensor]:
        """Mean InfoNCE over the directed crop pairs; the global crops' keys are queued.

        Each crop batch goes through the encoders on its own (BatchNorm statistics per
        crop type, as in LoGo's code); keys are computed only for crops that are targets.
        """
        self.update_target(ctx)
        negatives = self.queue.keys.clone()
        queries = [F.normalize(self.online(view), dim=1) for view in batch.views]
        pairs = crop_pairs(len(batch.views), self.config.crop_pairs)
        keys = {t: self.keys(batch.views[t], ctx) for t in sorted({t for _, t in pairs})}
        temperature = self.config.temperature
        terms = [info_nce(queries[q], keys[t], negatives, temperature) for q, t in pairs]
        loss = torch.stack(terms).mean()
        self.queue.push(all_gather_concat(torch.cat([keys[0], keys[1]])),
                        all_gather_concat(torch.cat([batch.indices, batch.indices])))  # fmt: skip
        means = pair_term_means(pairs, [term.detach() for term in terms])
        return {"loss": loss, "loss/instance": loss.detach(),
                **{f"loss/{name}": value for name, value in means.items()}}  # fmt: skip

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """The query encoder's normalised projection (``--layer head``)."""
        return F.normalize(self.online(images), dim=1)
