"""HCSC: Hierarchical Contrastive Selective Coding (Guo et al., CVPR 2022).

MoCo v2 plus prototypes from a bottom-up hierarchical k-means of the momentum features,
re-computed at the start of every epoch after the warm-up, and two selections that drop
likely false negatives: queue entries that probably share the query's prototype
(instance selection) and prototypes that probably share its parent (prototype
selection). It follows the paper and the authors' released code.

Differences from the authors' code, all on purpose:

* negative prototypes are every id except the batch positives (their code drops the
  highest assigned id);
* instance selection keeps, per level, a table of every queue entry's keep probability
  for every prototype (int16, in units of 1/32768), updated when entries are enqueued and
  rebuilt when the clustering changes; a step gathers its positives' rows instead of
  recomputing their per-step ``queue x prototypes`` softmax. Above
  ``selection_table_mb`` one batched product with cached log-normalisers is used instead.
  Both give the same keep probabilities as the direct softmax (tests check it);
* the Bernoulli draws use 15-bit uniforms, so keep probabilities are resolved to 1/32768
  (their code: float uniforms; HCSC clamps keep probabilities to 0.999 anyway);
* no Python sets or loops over samples; errors are not swallowed;
* ``mask_mode`` (a de-selected negative as a logit of 0, or left out of the softmax) and
  ``instance_level_reduction`` (the instance term summed or averaged over the levels)
  expose two choices of their code as options (defaults = code).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from sslkit.data.base import DataInfo
from sslkit.data.views import ViewSpec, multi_crop_view_spec, view_spec_from_config
from sslkit.distributed import all_gather_concat
from sslkit.errors import BadInput
from sslkit.methods.base import Batch, StepContext, hp
from sslkit.methods.prototypical import Prototypes, PrototypicalMoCo
from sslkit.nn.losses import MASK_MODES, info_nce
from sslkit.nn.prototypes import (
    KEEP_SCALE,
    bernoulli_mask,
    instance_keep_thresholds,
    level_keep_probabilities,
    log_normalizer,
    negative_prototype_ids,
    parent_keep_table,
    prototype_keep_probability,
    prototype_loss,
    threshold_mask,
)

# HCSC's four local crops at 224 px: (size / 224, RandomResizedCrop scale range).
PAPER_LOCAL_CROPS = [[192 / 224, [0.172, 0.86]], [160 / 224, [0.143, 0.715]],
                     [128 / 224, [0.114, 0.571]], [96 / 224, [0.086, 0.429]]]  # fmt: skip


class HCSC(PrototypicalMoCo):
    """MoCo v2 + hierarchical prototypes with instance and prototype selection."""

    name = "hcsc"
    description = "HCSC: MoCo v2 + hierarchical prototypes, selective negatives (Guo et al. 2022)"
    default_train = {"lr": 0.03, "weight_decay": 1e-4, "momentum": 0.9, "schedule": "cosine"}
    hierarchical = True
    check_settings = {"queue_size": 64, "num_clusters": [8, 4], "warmup_epochs": 0,
                      "kmeans_niter": 5, "kmeans_nredo": 1}  # fmt: skip

    @dataclass
    class Config(PrototypicalMoCo.Config):
        """HCSC hyper-parameters (defaults: the paper's ImageNet recipe)."""

        queue_size: int = hp(16384, "number of negative keys K in the queue", low=1)
        num_clusters: list = hp([3000, 2000, 1000], "prototypes per level, bottom-up")
        instance_selection: bool = hp(True, "Bernoulli-drop queue negatives near the prototype")
        proto_selection: bool = hp(True, "Bernoulli-drop negative prototypes near the parent")
        multi_crop: bool = hp(False, "add the local crops as extra queries")
        local_crops: list = hp(PAPER_LOCAL_CROPS, "[size fraction, [scale lo, hi]] per local crop")
        selection_on_local: bool = hp(True, "local queries use the instance masks too")
        mask_mode: str = hp("zero_logit", "zero_logit (authors' code) or exclude",
                            choices=("zero_logit", "exclude"))
        instance_level_reduction: str = hp("sum", "sum (authors' code) or mean over levels",
                                           choices=("sum", "mean"))
        selection_table_mb: int = hp(1024, "memory cap of the cached instance-selection "
                                     "table (2 B x queue x prototypes); above it, per-step "
                                     "products", low=0)  # fmt: skip

    def __init__(self, config: Config, backbone: torch.nn.Module, data_info: DataInfo) -> None:
        super().__init__(config, backbone, data_info)  # checks the config (check_config)
        levels = len(config.num_clusters)
        # log-normaliser of every queue entry's soft assignment, per level (see module doc)
        self.register_buffer("queue_log_norm", torch.zeros(levels, config.queue_size))
        # per level, k x K keep thresholds of every queue entry (derived from the queue and
        # the clustering, so not checkpointed: rebuilt at the first step that needs them)
        self._keep_tables: list[torch.Tensor] | None = None

    # -- views ---------------------------------------------------------------------------
    def views(self, augment: dict[str, Any]) -> ViewSpec:
        """Two global crops (query, key), plus the local crops with ``multi_crop``."""
        if not self.config.multi_crop:
            return view_spec_from_config(augment, self.data_info, count=2)
        global_crop = [1.0, list(augment["crop_scale"])]
        crops = [global_crop, global_crop, *self.config.local_crops]
        return multi_crop_view_spec(augment, self.data_info, [(f, tuple(s)) for f, s in crops])

    def online_views(self) -> int:
        """Query views per step: view 1 (and 2 with ``symmetric``) plus the local crops."""
        locals_ = len(self.config.local_crops) if self.config.multi_crop else 0
        return (2 if self.config.symmetric else 1) + locals_

    @classmethod
    def check_config(cls, config: Config, info: DataInfo) -> None:
        """Refuse settings the clustering or the losses cannot run with, before training."""
        super().check_config(config, info)  # prototype sizes (decreasing), k-means settings
        if config.mask_mode not in MASK_MODES:
            raise BadInput(f"hcsc: method.mask_mode must be one of {', '.join(MASK_MODES)}")
        if config.instance_level_reduction not in ("sum", "mean"):
            raise BadInput("hcsc: method.instance_level_reduction must be sum or mean")
        if config.queries != 1:
            raise BadInput("hcsc: method.queries must be 1 (extra queries are the local crops: "
                           "method.multi_crop)")  # fmt: skip
        if config.crop_pairs != "local_to_global":
            raise BadInput("hcsc: method.crop_pairs must be local_to_global (HCSC's local crops "
                           "are queries of the second global crop's key)")  # fmt: skip
        if config.symmetric and config.multi_crop:
            raise BadInput("hcsc: method.symmetric with multi_crop is not supported (the local "
                           "crops already add queries): set one of them to false")  # fmt: skip

    # -- what a clustering brings ----------------------------------------------------------
    def on_clustering(self, fresh: bool) -> None:
        """Each level's parent-keep table; the instance-selection tables are dropped and,
        for a new clustering, the queue's log-normalisers recomputed."""
        self._keep_tables = None
        if self.prototypes is not None:
            self.prototypes = _with_parent_tables(self.prototypes)
        if fresh:
            self._refresh_selection_cache()

    @torch.no_grad()
    def _refresh_selection_cache(self) -> None:
        """Recompute the queue's log-normalisers for the new clustering; drop the tables."""
        self._keep_tables = None
        for depth, level in enumerate(self.prototypes or []):
            self.queue_log_norm[depth] = log_normalizer(self.queue.keys, level.centroids,
                                                        level.density)  # fmt: skip

    def _table_fits(self) -> bool:
        """Whether the keep-threshold tables (int16, queue x all prototypes) fit the cap."""
        size = 2 * self.config.queue_size * sum(self.config.num_clusters)
        return size <= self.config.selection_table_mb << 20

    @torch.no_grad()
    def _instance_thresholds(self, queue: torch.Tensor, queue_log_norm: torch.Tensor,
                             positives: list[torch.Tensor]) -> torch.Tensor:  # fmt: skip
        """``L x b x K`` keep probabilities of the queue negatives, in units of 1/32768.

        From the cached tables (a row gather per level) when they fit, else from one
        ``(L·b) x D`` by ``D x K`` product with the cached log-normalisers.
        """
        levels = self.prototypes
        if self._table_fits():
            if self._keep_tables is None:
                self._keep_tables = [instance_keep_thresholds(queue, level.centroids,
                                                              level.density)
                                     for level in levels]  # fmt: skip
            return torch.stack([table.index_select(0, ids)
                                for table, ids in zip(self._keep_tables, positives, strict=True)])
        keep = level_keep_probabilities(queue, queue_log_norm,
                                        [level.centroids for level in levels],
                                        [level.density for level in levels], positives)
        return keep.mul_(KEEP_SCALE).round_()

    # -- M-step --------------------------------------------------------------------------
    def training_step(self, batch: Batch, ctx: StepContext) -> dict[str, torch.Tensor]:
        """Instance and prototype terms with selection (plain MoCo during the warm-up).

        With ``symmetric`` (an sslkit option, not in the paper) view 2 is also a query
        against view 1's key, every term is summed over both directions, and both keys are
        queued, as MoCo's symmetric loss does.
        """
        config = self.config
        self.update_target(ctx)
        queue = self.queue.keys.clone()  # before this step's push
        queue_log_norm = self.queue_log_norm.clone()
        directions = [(0, 1), (1, 0)] if config.symmetric else [(0, 1)]
        terms: dict[str, torch.Tensor] = {}
        keys = []
        for query_view, key_view in directions:
            query = F.normalize(self.online(batch.views[query_view]), dim=1)
            key = self.keys(batch.views[key_view], ctx)
            local_queries = [F.normalize(self.online(view), dim=1)
                             for view in batch.views[2:]] if query_view == 0 else []  # fmt: skip
            if self.prototypes is None:
                direction = self._warmup_terms(query, key, local_queries, queue)
            else:
                direction = self._selective_terms(query, key, local_queries, queue,
                                                  queue_log_norm, batch.indices,
                                                  ctx.generator)  # fmt: skip
            for name, value in direction.items():
                terms[name] = terms[name] + value if name in terms else value
            keys.append(key)
        self._enqueue(torch.cat(keys), batch.indices.repeat(len(directions)))
        loss = sum(terms.values())
        return {"loss": loss, **{f"loss/{name}": value.detach() for name, value in terms.items()}}

    def _warmup_terms(self, query, key, local_queries, queue) -> dict[str, torch.Tensor]:
        temperature = self.config.temperature
        terms = {"instance": info_nce(query, key, queue, temperature)}
        if local_queries:
            terms["local_instance"] = sum(info_nce(u, key, queue, temperature)
                                          for u in local_queries)  # fmt: skip
        return terms

    def _selective_terms(self, query, key, local_queries, queue, queue_log_norm, indices,
                         generator) -> dict[str, torch.Tensor]:  # fmt: skip
        config = self.config
        temperature, mode = config.temperature, config.mask_mode
        levels = self.prototypes
        # similarities to the key and the queue, computed once and shared by the levels
        global_sims = _InstanceSimilarities.of(query, key, queue, temperature)
        local_sims = [_InstanceSimilarities.of(u, key, queue, temperature) for u in local_queries]
        all_positives = [level.assignments[indices] for level in levels]
        masks = [None] * len(levels)
        if config.instance_selection:  # every level's b x K masks in one draw
            thresholds = self._instance_thresholds(queue, queue_log_norm, all_positives)
            masks = threshold_mask(thresholds, generator).unbind(0)
        instance, local_instance, proto, local_proto = [], [], [], []
        for depth, (positives, mask) in enumerate(zip(all_positives, masks, strict=True)):
            instance.append(global_sims.loss(mask, mode))
            local_mask = mask if config.selection_on_local else None
            for sims in local_sims:
                local_instance.append(sims.loss(local_mask, mode))
            proto.append(self._prototype_term(query, depth, positives, generator))
            for u in local_queries:
                local_proto.append(self._prototype_term(u, depth, positives, generator))
        scale = 1.0 if config.instance_level_reduction == "sum" else 1.0 / len(levels)
        terms = {"instance": scale * torch.stack(instance).sum(),
                 "prototype": torch.stack(proto).sum() / len(levels)}  # fmt: skip
        if local_queries:
            terms["local_instance"] = scale * torch.stack(local_instance).sum()
            terms["local_prototype"] = torch.stack(local_proto).sum() / len(levels)
        return terms

    def _prototype_term(self, query: torch.Tensor, depth: int, positives: torch.Tensor,
                        generator: torch.Generator) -> torch.Tensor:  # fmt: skip
        level = self.prototypes[depth]
        negatives = negative_prototype_ids(positives, len(level.centroids))
        mask = None
        if self.config.proto_selection and level.parent_keep is not None:
            keep = prototype_keep_probability(level.parent_keep, negatives,
                                              level.parents[positives])  # fmt: skip
            mask = bernoulli_mask(keep, generator)
        return prototype_loss(query, level.centroids, level.density, positives, negatives, mask,
                              self.config.mask_mode)  # fmt: skip

    @torch.no_grad()
    def _enqueue(self, key: torch.Tensor, indices: torch.Tensor) -> None:
        keys = all_gather_concat(key)
        rows = self.queue.push(keys, all_gather_concat(indices))
        keys = keys[-len(rows) :]
        for depth, level in enumerate(self.prototypes or []):
            self.queue_log_norm[depth, rows] = log_normalizer(keys, level.centroids,
                                                              level.density)  # fmt: skip
            if self._keep_tables is not None:
                self._keep_tables[depth][:, rows] = instance_keep_thresholds(
                    keys, level.centroids, level.density)


@dataclass
class _InstanceSimilarities:
    """One query set's instance logits, exponentiated once and shared by every level's mask.

    With ``e_j = exp(l_j − M)`` (l = similarity / T, M a detached per-row shift), a level's
    softmax denominator is ``exp(l_pos − M) + Σ_j m_j e_j`` (exclude) or
    ``exp(l_pos − M) + Σ_j m_j (e_j − exp(−M)) + K exp(−M)`` (zero_logit: a masked
    negative is a logit of 0): one masked sum per level instead of a full cross-entropy.
    """

    positive: torch.Tensor  # b x 1, l_pos
    exp_negative: torch.Tensor  # b x K, e_j
    shift: torch.Tensor  # b x 1, M (>= 0, >= every logit), detached

    @classmethod
    def of(cls, query: torch.Tensor, key: torch.Tensor, queue: torch.Tensor,
           temperature: float) -> _InstanceSimilarities:  # fmt: skip
        positive = (query * key).sum(dim=1, keepdim=True) / temperature
        negative = (query @ queue.t()) / temperature
        shift = torch.maximum(negative.amax(dim=1, keepdim=True), positive).clamp_min(0.0)
        shift = shift.detach()
        return cls(positive, torch.exp(negative - shift), shift)

    def loss(self, mask: torch.Tensor | None, mode: str) -> torch.Tensor:
        """Mean InfoNCE of the rows with ``mask`` applied to the negatives (see class doc)."""
        if mask is None:
            negatives = self.exp_negative.sum(dim=1, keepdim=True)
        elif mode == "exclude":
            negatives = (self.exp_negative * mask).sum(dim=1, keepdim=True)
        else:
            zero = torch.exp(-self.shift)
            kept = (self.exp_negative * mask).sum(dim=1, keepdim=True)
            dropped = mask.shape[1] - mask.sum(dim=1, keepdim=True)
            negatives = kept + dropped * zero
        denominator = torch.exp(self.positive - self.shift) + negatives
        return (torch.log(denominator) + self.shift - self.positive).mean()


def _with_parent_tables(levels: list[Prototypes]) -> list[Prototypes]:
    """Fill each level's ``parent_keep`` table from its parent level (once per clustering)."""
    for lower, upper in zip(levels, levels[1:], strict=False):
        similarity = lower.centroids @ upper.centroids.t()
        lower.parent_keep = parent_keep_table(similarity, upper.density)
    return levels
