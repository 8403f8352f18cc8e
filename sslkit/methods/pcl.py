"""PCL: Prototypical Contrastive Learning (Li et al., ICLR 2021).

MoCo plus ProtoNCE: at the start of every epoch after the warm-up the momentum features of
the training set are clustered M times by k-means (k_m clusters, seed m) with PCL's
per-prototype concentration; every step adds, for each clustering, an InfoNCE of the
query against its own prototype and ``r`` sampled negative prototypes, each logit divided
by the concentration of its prototype. Loss = InfoNCE + mean over clusterings. The
clustering, concentration and InfoNCE are the shared ones (``sslkit.clustering.kmeans``,
``sslkit.nn``), as HCSC uses. It follows the paper and the authors' released code.

Differences from the authors' code, on purpose:

* negative prototypes are drawn from every id ``0..k-1`` except the batch positives
  (the 2020 code dropped the highest assigned id);
* they are drawn with the step's torch generator (reproducible; ``random.sample`` on a
  set fails on Python >= 3.11);
* the duplicate-row halving of the all-reduce is not needed: the shared extractor
  gathers features by index;
* ``proto_layout``: ``batch_columns`` (default, the code: columns are the positives of
  the whole batch, so a shared positive also counts as a negative) or ``own_positive``
  (one positive column per row, HCSC's layout).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from sslkit.data.base import DataInfo
from sslkit.distributed import all_gather_concat
from sslkit.errors import BadInput
from sslkit.methods.base import Batch, StepContext, hp
from sslkit.methods.prototypical import Prototypes, PrototypicalMoCo
from sslkit.nn.losses import info_nce
from sslkit.nn.prototypes import negative_prototype_ids, prototype_loss

PROTO_LAYOUTS = ("batch_columns", "own_positive")


def sample_negative_prototypes(positives: torch.Tensor, num_prototypes: int, count: int,
                               generator: torch.Generator | None) -> torch.Tensor:  # fmt: skip
    """``count`` distinct prototype ids, none of them a positive of the batch (uniform)."""
    candidates = negative_prototype_ids(positives, num_prototypes)
    if count > len(candidates):
        raise BadInput(f"pcl: {count} negative prototypes wanted but only {len(candidates)} "
                       f"of {num_prototypes} are not batch positives: lower "
                       "method.num_negative_prototypes or raise method.num_clusters")  # fmt: skip
    device = generator.device if generator is not None else candidates.device
    order = torch.randperm(len(candidates), generator=generator, device=device)[:count]
    return candidates[order.to(candidates.device)]


def batch_columns_loss(
    query: torch.Tensor,
    centroids: torch.Tensor,
    density: torch.Tensor,
    positives: torch.Tensor,
    negatives: torch.Tensor,
) -> torch.Tensor:
    """PCL's layout: columns ``[c_pos(1) .. c_pos(b), c_neg(1) .. c_neg(r)]``, row i's target i.

    Logit ``(i, j) = q_i · c_j / phi_j``; the positives of the other rows are negatives of
    row i even when they are the same prototype (the authors' code does so).
    """
    columns = torch.cat([positives, negatives])
    logits = query @ centroids.index_select(0, columns).t() / density.index_select(0, columns)
    targets = torch.arange(len(query), device=query.device)
    return F.cross_entropy(logits, targets)


class PCL(PrototypicalMoCo):
    """MoCo + ProtoNCE over several flat k-means clusterings (PCL)."""

    name = "pcl"
    description = "PCL: MoCo + ProtoNCE over several k-means clusterings (Li et al. 2021)"
    default_train = {"lr": 0.03, "weight_decay": 1e-4, "momentum": 0.9, "schedule": "cosine"}
    check_settings = {"queue_size": 64, "num_clusters": [16, 24], "num_negative_prototypes": 4,
                      "warmup_epochs": 0, "kmeans_niter": 5, "kmeans_nredo": 1}  # fmt: skip

    @dataclass
    class Config(PrototypicalMoCo.Config):
        """PCL hyper-parameters (defaults: PCL v2 on ImageNet)."""

        queue_size: int = hp(16384, "number of negative keys r in the queue", low=1)
        num_clusters: list = hp([25000, 50000, 100000], "k of every clustering")
        num_negative_prototypes: int = hp(16384, "r negative prototypes drawn per clustering",
                                          low=1)
        proto_layout: str = hp("batch_columns", "batch_columns (authors' code) or own_positive",
                               choices=("batch_columns", "own_positive"))

    @classmethod
    def check_config(cls, config: Config, info: DataInfo) -> None:
        """Refuse settings the clustering or the loss cannot run with, before training."""
        super().check_config(config, info)  # sizes, k-means and concentration settings
        if not 0 < config.num_negative_prototypes < min(config.num_clusters):
            raise BadInput(f"pcl: method.num_negative_prototypes must be in "
                           f"1..{min(config.num_clusters) - 1} (and at most k minus the batch "
                           "size): lower it")  # fmt: skip
        if config.proto_layout not in PROTO_LAYOUTS:
            raise BadInput(f"pcl: method.proto_layout must be one of {', '.join(PROTO_LAYOUTS)}")
        if config.symmetric or config.queries != 1 or config.multi_crop:
            raise BadInput("pcl: method.symmetric, method.multi_crop and method.queries > 1 are "
                           "not part of PCL: use the defaults (false, false, 1)")  # fmt: skip

    def training_step(self, batch: Batch, ctx: StepContext) -> dict[str, torch.Tensor]:
        """InfoNCE against the queue plus the mean prototype term (after the warm-up)."""
        config = self.config
        self.update_target(ctx)
        queue = self.queue.keys.clone()  # before this step's push
        query = F.normalize(self.online(batch.views[0]), dim=1)
        key = self.keys(batch.views[1], ctx)
        terms = {"instance": info_nce(query, key, queue, config.temperature)}
        if self.prototypes is not None:
            per_clustering = [self.prototype_term(query, level, batch.indices, ctx.generator)
                              for level in self.prototypes]  # fmt: skip
            terms["prototype"] = torch.stack(per_clustering).mean()
        self.queue.push(all_gather_concat(key), all_gather_concat(batch.indices))
        loss = sum(terms.values())
        return {"loss": loss, **{f"loss/{name}": value.detach() for name, value in terms.items()}}

    def prototype_term(self, query: torch.Tensor, level: Prototypes, indices: torch.Tensor,
                       generator: torch.Generator | None) -> torch.Tensor:  # fmt: skip
        """One clustering's ProtoNCE term for the batch of dataset ``indices``."""
        positives = level.assignments[indices]
        negatives = sample_negative_prototypes(positives, len(level.centroids),
                                               self.config.num_negative_prototypes, generator)
        if self.config.proto_layout == "batch_columns":
            return batch_columns_loss(query, level.centroids, level.density, positives,
                                      negatives)  # fmt: skip
        return prototype_loss(query, level.centroids, level.density, positives, negatives)
