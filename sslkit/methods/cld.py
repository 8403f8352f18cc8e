"""CLD: Cross-Level instance-group Discrimination (Wang, Liu & Yu, CVPR 2021), an add-on.

A group branch (its own projection head on the shared backbone feature ``h``) embeds two
online views of every image; each view's group features are clustered inside the batch
by a few k-means iterations; each image's group feature of one view is then classified
into the cluster its other view fell into, against all of that view's centroids:

    L_CLD = 1/2 [CE(F1 M2^T / T_G, G2) + CE(F2 M1^T / T_G, G1)]

and the host's loss becomes ``L + weight · L_CLD``, as in the CLD paper and the authors'
code. Use it as ``--method moco+cld`` (with
``--set method.queries=2``, MoCo + CLD's three views), ``npid+cld`` or on any method that
computes two online views (:mod:`sslkit.methods.addons`).

As the authors' code (and so as their numbers): Euclidean k-means on the unit group
features, initialised with the first K rows, centroids neither re-normalised nor
detached (the loss reaches the clustered view through them), empty groups at the zero
vector, and the clustering done on each process's local batch (with K >= the local batch
every image is its own group; a warning says so).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from sslkit.methods.addons import AddOn, Recorded
from sslkit.methods.base import Batch, StepContext, hp
from sslkit.nn.heads import build_head


def batch_kmeans(features: torch.Tensor, groups: int,
                 iterations: int = 5) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """CLD's in-batch k-means: ``(labels, centroids)`` of ``b x d`` features into K groups.

    Centroids start as the first K rows (zero rows beyond ``b``); each iteration assigns
    every row to the nearest centroid (squared Euclidean) and sets each centroid to the
    mean of its rows (the zero vector when it has none). The labels are those of the last
    assignment, the centroids those of the last update, with gradient through them.
    """
    size, dim = features.shape
    seeds = features[: min(groups, size)]
    centroids = torch.cat([seeds, features.new_zeros(groups - len(seeds), dim)])
    labels = torch.zeros(size, dtype=torch.long, device=features.device)
    for _ in range(iterations):
        with torch.no_grad():
            distances = (centroids * centroids).sum(dim=1) - 2 * features @ centroids.t()
            labels = distances.argmin(dim=1)
        members = F.one_hot(labels, groups).to(features.dtype)  # b x K
        counts = members.sum(dim=0).clamp_min(1.0)
        centroids = members.t() @ features / counts[:, None]
    return labels, centroids


def cld_loss(first: torch.Tensor, second: torch.Tensor, groups: int, temperature: float,
             iterations: int = 5) -> torch.Tensor:  # fmt: skip
    """The symmetric cross-view instance-group term of two views' unit group features."""
    labels_1, centroids_1 = batch_kmeans(first, groups, iterations)
    labels_2, centroids_2 = batch_kmeans(second, groups, iterations)
    return 0.5 * (F.cross_entropy(first @ centroids_2.t() / temperature, labels_2)
                  + F.cross_entropy(second @ centroids_1.t() / temperature, labels_1))  # fmt: skip


class CLD(AddOn):
    """The CLD group branch and its loss term, on the host's first two online views."""

    name = "cld"
    description = "CLD: cross-level instance-group discrimination (Wang et al. 2021)"
    online_views_needed = 2
    check_settings = {"groups": 4}

    @dataclass
    class Config:
        """CLD hyper-parameters (defaults: the MoCo v2 + CLD ImageNet script)."""

        weight: float = hp(0.25, "lambda, the weight of the CLD term")
        groups: int = hp(120, "K, k-means groups per (local) batch", low=1)
        temperature: float = hp(0.2, "T_G of the group softmax (ImageNet script: 0.4)", above=0)
        iterations: int = hp(5, "k-means iterations per batch", low=1)
        dim: int = hp(128, "output dimension of the group head", low=1)
        head: str = hp("linear", "group head: linear, mlp, norm_linear or norm_mlp",
                       choices=("linear", "mlp", "norm_linear", "norm_mlp"))

    def __init__(self, config: Config, host) -> None:
        super().__init__(config, host)
        from sslkit.errors import BadInput

        if config.groups < 1 or config.iterations < 1 or config.temperature <= 0:
            raise BadInput("cld: method.cld_groups and method.cld_iterations must be >= 1 and "
                           "method.cld_temperature > 0")  # fmt: skip
        self.group_head = build_head(config.head, self.feature_dim, config.dim)
        self._warned = False

    def terms(self, recorded: Recorded, batch: Batch,
              ctx: StepContext) -> dict[str, torch.Tensor]:  # fmt: skip
        """``{"cld": L_CLD}`` of the first two online views."""
        first, second = (F.normalize(self.group_head(h), dim=1)
                         for h in recorded.representations[:2])  # fmt: skip
        if self.config.groups >= len(first) and not self._warned:
            warnings.warn(f"cld: {self.config.groups} groups for a local batch of {len(first)}: "
                          "every image is its own group (as in CLD's ImageNet script); lower "
                          "method.cld_groups for real grouping", stacklevel=2)  # fmt: skip
            self._warned = True
        return {"cld": cld_loss(first, second, self.config.groups, self.config.temperature,
                                self.config.iterations)}  # fmt: skip
