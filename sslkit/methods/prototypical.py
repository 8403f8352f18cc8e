"""What every prototype method shares: MoCo plus a clustering of the training set (E-step).

PCL and HCSC (and any plugin in their family) re-cluster the momentum encoder's features
of the whole training set at the start of every epoch after a warm-up, on rank 0, and
broadcast the result; the clustering is method state (saved in checkpoints, moved with the
module). :class:`PrototypicalMoCo` does all of that once; a subclass says how to cluster
(:meth:`PrototypicalMoCo.cluster_features`) and what to derive when the clustering
changes (:meth:`PrototypicalMoCo.on_clustering_changed`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F

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
    """MoCo with a per-epoch clustering of the momentum features (abstract: see module doc)."""

    @dataclass
    class Config(MoCo.Config):
        """Hyper-parameters shared by the prototype methods."""

        num_clusters: list = hp([3000, 2000, 1000], "prototypes per clustering")
        warmup_epochs: int = hp(20, "epochs of plain MoCo before the first clustering")
        kmeans_niter: int = hp(20, "k-means iterations per clustering")
        kmeans_nredo: int = hp(5, "k-means restarts per clustering (best kept)")

    hierarchical = False  # whether level l has parents in level l + 1

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.prototypes: list[Prototypes] | None = None

    # -- what a subclass provides ------------------------------------------------------
    def cluster_features(self, features: torch.Tensor) -> list[Prototypes]:
        """Cluster ``N x dim`` unit features (rank 0 only); one entry per clustering."""
        raise TypeError(f"{type(self).__name__} must define cluster_features")

    def on_clustering_changed(self) -> None:
        """Derive what depends on the clustering alone (called whenever it is installed:
        new, loaded from a checkpoint, or moved to another device)."""

    def on_new_clustering(self) -> None:
        """Update state that mixes the new clustering with the method's buffers (called after
        the E-step only; a loaded checkpoint already holds those buffers)."""

    # -- E-step --------------------------------------------------------------------------
    def on_epoch_start(self, ctx: EpochContext) -> None:
        """After the warm-up: cluster the momentum features of the whole training set."""
        if ctx.epoch < self.config.warmup_epochs:
            return
        features = F.normalize(ctx.extract_features(self.target).float(), dim=1)
        clustering = self.cluster_features(features) if ctx.dist.is_main else None
        self.set_clustering(self.broadcast_clustering(clustering, features.shape[0],
                                                      features.device))  # fmt: skip
        self.on_new_clustering()

    def set_clustering(self, clustering: list[Prototypes] | None) -> None:
        """Install a clustering (or none) and let the subclass derive its tables."""
        self.prototypes = clustering
        self.on_clustering_changed()

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
