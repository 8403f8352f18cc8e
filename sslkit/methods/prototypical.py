"""What every prototype method shares: MoCo plus a clustering of the training set (E-step).

PCL and HCSC (and any plugin in their family) re-cluster the momentum encoder's features
of the whole training set at the start of every epoch after a warm-up, on rank 0, and
broadcast the result; the clustering is method state (saved in checkpoints, moved with the
module). :class:`PrototypicalMoCo` does all of that, in one straight E-step
(:meth:`PrototypicalMoCo.on_epoch_start`: extract, k-means, broadcast, install). A
subclass declares ``hierarchical`` (HCSC's bottom-up levels, or PCL's independent
clusterings) and its ``num_clusters``, and may derive tables from a clustering in
:meth:`PrototypicalMoCo.on_clustering`. The clustering settings are declared here once and
checked by :meth:`PrototypicalMoCo.check_config`, which subclasses extend with their own.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from sslkit.data.base import DataInfo
from sslkit.distributed import broadcast_
from sslkit.methods.base import EpochContext, hp
from sslkit.methods.moco import MoCo


@dataclass
class Prototypes:
    """One clustering (a level of HCSC's hierarchy, or one of PCL's k), on the device."""

    centroids: torch.Tensor  # k x dim, unit rows
    density: torch.Tensor  # k concentrations phi, mean = T
    assignments: torch.Tensor  # N, the prototype of every training image
    parents: torch.Tensor | None = None  # k, prototype one level up (hierarchies only)
    parent_keep: torch.Tensor | None = None  # derived by HCSC from the level above

    TENSORS = ("centroids", "density", "assignments", "parents")

    def to(self, device: torch.device) -> Prototypes:
        """The same clustering on ``device`` (derived tables dropped)."""
        moved = {name: None if getattr(self, name) is None else getattr(self, name).to(device)
                 for name in self.TENSORS}  # fmt: skip
        return replace(self, **moved, parent_keep=None)


def clustering_from_levels(levels, device: torch.device) -> list[Prototypes]:
    """:class:`Prototypes` on ``device`` from ``sslkit.clustering.kmeans.ClusterLevel``s."""

    def tensor(array):
        return None if array is None else torch.from_numpy(array).to(device)

    return [Prototypes(tensor(level.centroids), tensor(level.density),
                       tensor(level.assignments), tensor(level.parents))
            for level in levels]  # fmt: skip


class PrototypicalMoCo(MoCo):
    """MoCo with a per-epoch clustering of the momentum features (abstract: see module doc).

    A subclass's ``Config`` declares ``num_clusters`` (one size per level or clustering).
    """

    @dataclass
    class Config(MoCo.Config):
        """Settings of the per-epoch clustering, shared by the prototype methods."""

        warmup_epochs: int = hp(20, "epochs of plain MoCo before the first clustering", low=0)
        kmeans_niter: int = hp(20, "k-means iterations per clustering", low=1)
        kmeans_nredo: int = hp(5, "k-means restarts per clustering (best kept)", low=1)
        concentration_alpha: float = hp(10.0, "alpha of PCL's concentration phi", above=0)

    hierarchical: ClassVar[bool] = False  # level l has parents in level l + 1 (HCSC)
    minimum_clusters: ClassVar[int] = 2  # a clustering of one cluster has no negatives

    def __init__(self, config: Any, backbone: torch.nn.Module, data_info: DataInfo) -> None:
        self.check_config(config, data_info)
        super().__init__(config, backbone, data_info)
        self.prototypes: list[Prototypes] | None = None

    @classmethod
    def check_config(cls, config: Any, info: DataInfo) -> None:
        """Refuse settings the clustering cannot run with, before training (subclasses add
        their own fields' checks and call this)."""
        from sslkit.clustering.kmeans import check_cluster_sizes
        from sslkit.errors import BadInput

        check_cluster_sizes(config.num_clusters, hierarchical=cls.hierarchical,
                            points=info.num_samples, minimum=cls.minimum_clusters,
                            setting=f"{cls.name}: method.num_clusters")  # fmt: skip
        if config.warmup_epochs < 0 or config.kmeans_niter < 1 or config.kmeans_nredo < 1:
            raise BadInput(f"{cls.name}: method.warmup_epochs must be >= 0 and "
                           "method.kmeans_niter, kmeans_nredo >= 1")  # fmt: skip
        if config.concentration_alpha <= 0:
            raise BadInput(f"{cls.name}: method.concentration_alpha must be positive")

    def on_clustering(self, fresh: bool) -> None:
        """Derive what depends on the clustering (called whenever one is installed).

        ``fresh`` is True after an E-step, False for a clustering loaded from a checkpoint
        or moved to another device (whose dependent buffers were saved or moved with it).
        """

    # -- E-step --------------------------------------------------------------------------
    def on_epoch_start(self, ctx: EpochContext) -> None:
        """After the warm-up: cluster the momentum features of the whole training set.

        Rank 0 runs the k-means (``sslkit.clustering.kmeans``: hierarchical levels or one
        flat k-means per size, with concentrations), every rank receives it, and it is
        installed.
        """
        if ctx.epoch < self.config.warmup_epochs:
            return
        features = F.normalize(ctx.extract_features(self.target).float(), dim=1)
        clustering = self.kmeans(features) if ctx.dist.is_main else None
        clustering = self.broadcast_clustering(clustering, features.shape[0], features.device)
        self.set_clustering(clustering, fresh=True)

    def kmeans(self, features: torch.Tensor) -> list[Prototypes]:
        """The clustering of ``N x dim`` unit features: bottom-up hierarchical levels
        (``hierarchical``) or one k-means per size (seed = its position)."""
        from sslkit.clustering.kmeans import KMeansSettings, flat_kmeans, hierarchical_kmeans

        config = self.config
        settings = KMeansSettings(niter=config.kmeans_niter, nredo=config.kmeans_nredo, seed=0)
        build = hierarchical_kmeans if self.hierarchical else flat_kmeans
        clustering = build(features.cpu().numpy(), list(config.num_clusters),
                           config.temperature, settings, alpha=config.concentration_alpha)
        return clustering_from_levels(clustering.levels, features.device)

    def set_clustering(self, clustering: list[Prototypes] | None, fresh: bool = False) -> None:
        """Install a clustering (or none) and let the subclass derive its tables."""
        self.prototypes = clustering
        self.on_clustering(fresh)
    def broadcast_clustering(self, clustering: list[Prototypes] | None, num_samples: int,
                             device: torch.device) -> list[Prototypes]:  # fmt: skip
        """Rank 0's clustering on every rank (others allocate tensors of the same shapes)."""
        sizes = list(self.config.num_clusters)
        if clustering is None:
            dim = self.config.dim
            clustering = [Prototypes(
                torch.zeros(k, dim, device=device), torch.zeros(k, device=device),
                torch.zeros(num_samples, dtype=torch.long, device=device),
                torch.zeros(k, dtype=torch.long, device=device)
                if self.hierarchical and d < len(sizes) - 1 else None,
            ) for d, k in enumerate(sizes)]  # fmt: skip
        for level in clustering:
            for name in Prototypes.TENSORS:
                if getattr(level, name) is not None:
                    broadcast_(getattr(level, name))
        return clustering

    # -- checkpointed clustering -----------------------------------------------------------
    def get_extra_state(self) -> dict[str, Any]:
        """The current clustering (tensors only, so ``weights_only`` loading reads it)."""
        if self.prototypes is None:
            return {"levels": 0}
        state: dict[str, Any] = {"levels": len(self.prototypes)}
        for depth, level in enumerate(self.prototypes):
            for name in Prototypes.TENSORS:
                value = getattr(level, name)
                if value is not None:
                    state[f"{name}_{depth}"] = value.detach().cpu()
        return state

    def set_extra_state(self, state: dict[str, Any]) -> None:
        """Restore the clustering saved by :meth:`get_extra_state`."""
        count = int(state.get("levels", 0))
        if count == 0:
            self.set_clustering(None)
            return
        device = self.queue.buffer.device
        self.set_clustering([Prototypes(
            state[f"centroids_{d}"].to(device), state[f"density_{d}"].to(device),
            state[f"assignments_{d}"].to(device),
            state[f"parents_{d}"].to(device) if f"parents_{d}" in state else None,
        ) for d in range(count)])  # fmt: skip

    def _apply(self, fn, *args, **kwargs):
        """Move the clustering tensors with the module (``.to(device)``)."""
        result = super()._apply(fn, *args, **kwargs)
        if getattr(self, "prototypes", None) is not None:
            device = self.queue.buffer.device
            self.set_clustering([level.to(device) for level in self.prototypes])
        return result
