"""CLD's label-free model-selection score NMI(f, f') * R(f, f') (CLD §4.2).

Two augmented views of the same images are embedded with the frozen encoder (the
checkpoint's own training augmentation, a fixed seed). NMI(f, f') compares a k-means
clustering of the first views with a k-means clustering of the second (geometric
normalisation); R(f, f') is top-1 instance retrieval: the share of images whose nearest
second view (cosine) is their own. Their product ranks models like linear accuracy
without any label (CLD §4.2, Fig. 8). The CLD authors released no code for it; this is
the toolkit's definition.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from sslkit.data.base import ImageDataset
from sslkit.data.views import ViewSpec, make_views
from sslkit.errors import BadInput


@dataclass
class UnsupervisedScore:
    """NMI between the views' clusterings, instance retrieval R, and their product."""

    nmi: float
    retrieval: float
    score: float
    clusters: int
    images: int

    def as_dict(self) -> dict[str, Any]:
        """Plain types for JSON, the three scores in % (as every sslkit score)."""
        values = asdict(self)
        return {**values, **{key: 100.0 * values[key] for key in ("nmi", "retrieval", "score")}}


def instance_retrieval(first: torch.Tensor, second: torch.Tensor) -> float:
    """Share of rows i whose most cosine-similar row of ``second`` is row i."""
    from sslkit.eval.knn import neighbour_search

    if first.shape != second.shape:
        raise BadInput("the two views need the same number of features of the same width")
    search = neighbour_search(F.normalize(second.float(), dim=1))
    hits = 0
    for start in range(0, len(first), 4096):
        queries = F.normalize(first[start : start + 4096].float(), dim=1)
        _, nearest = search(queries, 1)
        own = torch.arange(start, start + len(queries), device=nearest.device)
        hits += int((nearest[:, 0] == own).sum())
    return hits / len(first)


def view_agreement_nmi(first: np.ndarray, second: np.ndarray, clusters: int,
                       seed: int = 0) -> float:  # fmt: skip
    """NMI (geometric normalisation) between k-means clusterings of the two views."""
    from sklearn.metrics import normalized_mutual_info_score

    from sslkit.clustering.kmeans import KMeansSettings, kmeans

    settings = KMeansSettings(niter=20, nredo=1, seed=seed, spherical=True)
    labels_first = kmeans(first, clusters, settings).labels
    labels_second = kmeans(second, clusters, settings).labels
    return float(normalized_mutual_info_score(labels_first, labels_second,
                                              average_method="geometric"))  # fmt: skip


def unsupervised_score(first: torch.Tensor, second: torch.Tensor, clusters: int,
                       seed: int = 0) -> UnsupervisedScore:  # fmt: skip
    """NMI(f, f') * R(f, f') of two views' L2-normalised features (rows = images)."""
    if len(first) < 2 or clusters < 2:
        raise BadInput("the unsupervised score needs at least 2 images and 2 clusters")
    if clusters > len(first):
        raise BadInput(f"{clusters} clusters for {len(first)} images: "
                       "lower --score-clusters or use more --score-images")  # fmt: skip
    nmi = view_agreement_nmi(F.normalize(first, dim=1).cpu().numpy(),
                             F.normalize(second, dim=1).cpu().numpy(), clusters, seed)  # fmt: skip
    retrieval = instance_retrieval(first, second)
    return UnsupervisedScore(nmi, retrieval, nmi * retrieval, clusters, len(first))


@torch.no_grad()
def two_view_features(
    network: torch.nn.Module,
    dataset: ImageDataset,
    spec: ViewSpec,
    device: torch.device,
    images: int,
    seed: int = 0,
    batch_size: int = 256,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Features of two augmented views (``spec`` holds exactly two) of a seeded sample.

    ``images`` caps the sample (the whole dataset when it is smaller). Rows are
    L2-normalised; the sample and the augmentations depend only on ``seed``.
    """
    from sslkit.data.loader import iterate_images

    if len(spec.crops) != 2:
        raise ValueError("two_view_features needs a ViewSpec of exactly two views")
    order = np.random.default_rng(seed).permutation(len(dataset))[: min(images, len(dataset))]
    batches = [np.sort(order[i : i + batch_size]) for i in range(0, len(order), batch_size)]
    generator = torch.Generator(device=device).manual_seed(seed)
    first, second = [], []
    for batch_images, _ in iterate_images(dataset, batches):
        views = make_views(batch_images.to(device), spec, generator)
        first.append(F.normalize(network(views[0]).float(), dim=1))
        second.append(F.normalize(network(views[1]).float(), dim=1))
    return torch.cat(first), torch.cat(second)
