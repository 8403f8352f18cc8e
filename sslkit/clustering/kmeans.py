"""k-means on faiss (GPU index when a GPU is visible), PCL's concentration, hierarchical levels.

One implementation serves ``sslkit cluster`` and the clustering methods (PCL, HCSC). The
faiss settings are the authors' (``niter=20``, ``nredo=5``, ``seed`` = level index,
``max_points_per_centroid=1000``, exact float32 L2 index).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from sslkit.errors import BadInput

MAX_POINTS_PER_CENTROID = 1000  # PCL / HCSC; faiss subsamples above k x this many points


@dataclass
class KMeansSettings:
    """faiss ``Clustering`` parameters shared by every level."""

    niter: int = 20
    nredo: int = 5
    seed: int = 0
    spherical: bool = False
    use_gpu: bool | None = None  # None: the GPU index when faiss sees a GPU


@dataclass
class KMeansResult:
    """One k-means run: raw centroids, nearest-centroid labels and squared distances."""

    centroids: np.ndarray  # k x d float32 (as faiss returns them, not normalised)
    labels: np.ndarray  # n int64
    squared_distances: np.ndarray  # n float32, to the raw centroid
    device: str  # "faiss-gpu" or "faiss-cpu"


@dataclass
class ClusterLevel:
    """One level of a (hierarchical) clustering of N points.

    ``assignments`` is every point's cluster; ``parents`` (``None`` at the top level or in a
    flat clustering) maps each cluster to its cluster one level up.
    """

    centroids: np.ndarray  # k x d, unit rows
    density: np.ndarray  # k concentrations phi, mean = temperature
    assignments: np.ndarray  # N int64
    parents: np.ndarray | None = None  # k int64


@dataclass
class Clustering:
    """Levels bottom (finest) to top, and which faiss index computed them."""

    levels: list[ClusterLevel]
    hierarchical: bool
    device: str
    extra: dict = field(default_factory=dict)

    @property
    def sizes(self) -> list[int]:
        """Number of clusters per level."""
        return [len(level.centroids) for level in self.levels]


def faiss_device(use_gpu: bool | None = None) -> str:
    """``"faiss-gpu"`` when faiss has a GPU (and it is not refused), else ``"faiss-cpu"``."""
    import faiss

    has_gpu = hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0
    if use_gpu and not has_gpu:
        raise BadInput("faiss sees no GPU: drop the GPU request or install faiss-gpu with CUDA")
    return "faiss-gpu" if has_gpu and use_gpu is not False else "faiss-cpu"


def _flat_index(dim: int, device: str):
    import faiss

    if device == "faiss-gpu":
        resources = faiss.StandardGpuResources()
        config = faiss.GpuIndexFlatConfig()
        config.useFloat16 = False
        config.device = 0
        return faiss.GpuIndexFlatL2(resources, dim, config)
    return faiss.IndexFlatL2(dim)


def check_points(points: np.ndarray, k: int, what: str = "features") -> np.ndarray:
    """``points`` as a C-contiguous float32 matrix; bad shapes, NaN or k > n are bad input."""
    points = np.ascontiguousarray(points, dtype=np.float32)
    if points.ndim != 2 or len(points) == 0 or points.shape[1] == 0:
        raise BadInput(f"{what} must be a non-empty N x D matrix, got shape {points.shape}")
    if not np.isfinite(points).all():
        raise BadInput(f"{what} contain NaN or infinite values: re-extract them")
    check_cluster_sizes([k], hierarchical=False, points=len(points))
    return points


class PointRows:
    """N x D points read block by block: an array, or a feature file's rows left on disk.

    ``source`` is anything sliced by rows with a ``shape`` (a numpy array, the ``features``
    of :func:`~sslkit.features.store.open_features`); blocks come back as checked float32,
    L2-normalised unless ``normalize=False``. Lets ``sslkit cluster`` hold only the k-means
    training sample and one block in memory, not N x D (twice, with its normalised copy).
    """

    def __init__(self, source, normalize: bool = True, block_rows: int = 65536) -> None:
        if len(source.shape) != 2 or source.shape[0] == 0 or source.shape[1] == 0:
            raise BadInput(f"features must be a non-empty N x D matrix, got shape "
                           f"{tuple(source.shape)}")  # fmt: skip
        self.source = source
        self.normalize = normalize
        self.block_rows = block_rows

    def __len__(self) -> int:
        return int(self.source.shape[0])

    @property
    def dim(self) -> int:
        """Feature dimension D."""
        return int(self.source.shape[1])

    def _prepared(self, block) -> np.ndarray:
        block = check_points(block, 1)
        return _normalize_rows(block) if self.normalize else block

    def blocks(self) -> Iterator[tuple[int, np.ndarray]]:
        """``(first row, block)`` for consecutive blocks of ``block_rows`` rows."""
        for start in range(0, len(self), self.block_rows):
            yield start, self._prepared(self.source[start : start + self.block_rows])

    def gather(self, rows: np.ndarray) -> np.ndarray:
        """The points at the sorted row numbers ``rows``, read block by block."""
        parts = []
        for start in range(0, len(self), self.block_rows):
            stop = start + self.block_rows
            wanted = rows[(rows >= start) & (rows < stop)]
            if len(wanted):
                parts.append(self._prepared(self.source[start:stop])[wanted - start])
        return np.concatenate(parts) if parts else np.zeros((0, self.dim), np.float32)


def kmeans(points: np.ndarray | PointRows, k: int, settings: KMeansSettings,
           max_train_points: int | None = None) -> KMeansResult:  # fmt: skip
    """faiss k-means of ``points`` into ``k`` clusters, then a nearest-centroid search.

    An array is clustered as the authors do: faiss trains on it (on a seeded sample of
    ``k x 1000`` points when it has more) and searches it in one call. :class:`PointRows`
    are streamed: the training sample (all rows up to ``k x 1000``, or ``max_train_points``
    when smaller; a seeded uniform sample otherwise) is read into memory, then every block
    is assigned to its nearest centroid.
    """
    if not isinstance(points, PointRows):
        points = check_points(points, k)
        centroids, index, device = _train(points, k, settings)
        squared, labels = index.search(points, 1)
        return KMeansResult(centroids, labels[:, 0].astype(np.int64),
                            squared[:, 0].astype(np.float32), device)  # fmt: skip
    _checked(points, k)
    limit = k * MAX_POINTS_PER_CENTROID
    if max_train_points is not None:
        limit = max(k, min(limit, max_train_points))
    sample = np.arange(len(points))
    if len(points) > limit:
        sample = np.sort(np.random.default_rng(settings.seed).choice(len(points), limit,
                                                                     replace=False))  # fmt: skip
    centroids, index, device = _train(points.gather(sample), k, settings)
    labels = np.empty(len(points), dtype=np.int64)
    squared = np.empty(len(points), dtype=np.float32)
    for start, block in points.blocks():
        distances, nearest = index.search(block, 1)
        labels[start : start + len(block)] = nearest[:, 0]
        squared[start : start + len(block)] = distances[:, 0]
    return KMeansResult(centroids, labels, squared, device)


def _train(points: np.ndarray, k: int, settings: KMeansSettings):
    """faiss-trained ``k x d`` centroids, the index holding them, and the faiss device."""
    import faiss

    device = faiss_device(settings.use_gpu)
    clustering = faiss.Clustering(points.shape[1], k)
    clustering.niter = settings.niter
    clustering.nredo = settings.nredo
    clustering.seed = settings.seed
    clustering.spherical = settings.spherical
    clustering.max_points_per_centroid = MAX_POINTS_PER_CENTROID
    # Only used for faiss's "too few points" warning: HCSC's upper levels cluster 3000
    # centroids into 2000 by design, so the warning is noise.
    clustering.min_points_per_centroid = 1
    clustering.verbose = False
    index = _flat_index(points.shape[1], device)
    clustering.train(points, index)
    centroids = faiss.vector_to_array(clustering.centroids).reshape(k, points.shape[1])
    return centroids.astype(np.float32), index, device


def concentration(
    squared_distances: np.ndarray, labels: np.ndarray, k: int, temperature: float,
    alpha: float = 10.0,
) -> np.ndarray:  # fmt: skip
    """PCL's per-cluster concentration phi (PCL eq. 12 plus the code's clip and rescale).

    phi_c = mean(sqrt(D)) / ln(|S_c| + alpha) for clusters with more than one member; the
    others get the maximum of those; then phi is clipped to its 10th-90th percentile and
    rescaled so that its mean is ``temperature``.
    """
    distances = np.sqrt(np.maximum(np.asarray(squared_distances, dtype=np.float64), 0.0))
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    sums = np.bincount(labels, weights=distances, minlength=k)
    several = counts > 1
    phi = np.zeros(k, dtype=np.float64)
    phi[several] = sums[several] / counts[several] / np.log(counts[several] + alpha)
    phi[~several] = phi[several].max() if several.any() else 1.0
    phi = np.clip(phi, np.percentile(phi, 10), np.percentile(phi, 90))
    if phi.mean() <= 0:  # every cluster is a set of identical points
        phi = np.ones(k)
    return (temperature * phi / phi.mean()).astype(np.float32)


def _normalize_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.maximum(norms, 1e-12)).astype(np.float32)


def check_cluster_sizes(ks, *, hierarchical: bool, points: int = 0, minimum: int = 1,
                        setting: str = "--k") -> list[int]:
    """The one check of clustering sizes, for ``sslkit cluster`` and the methods that cluster.

    Sizes are at least ``minimum``; hierarchical levels (bottom-up) never grow; with
    ``points`` > 0 no size exceeds it. ``setting`` names what the user sets (``--k``,
    ``hcsc: method.num_clusters``) in the one-line :class:`BadInput`.
    """
    ks = [int(k) for k in ks]
    if not ks or min(ks) < minimum:
        raise BadInput(f"{setting} must be sizes >= {minimum}, got {ks}: e.g. 3000,2000,1000")
    if hierarchical and any(upper > lower for lower, upper in zip(ks, ks[1:], strict=False)):
        raise BadInput(f"{setting}: hierarchical levels must not grow, got {ks}: list them "
                       "bottom-up, e.g. 3000,2000,1000")  # fmt: skip
    if points and max(ks) > points:
        raise BadInput(f"{setting}: cannot make {max(ks)} clusters of {points} points: use "
                       f"k <= {points}")  # fmt: skip
    return ks


def hierarchical_kmeans(
    features: np.ndarray | PointRows, ks: list[int], temperature: float,
    settings: KMeansSettings, max_train_points: int | None = None, alpha: float = 10.0,
    on_level: Callable[[int], None] | None = None,
) -> Clustering:  # fmt: skip
    """HCSC's bottom-up k-means: level 0 clusters the points, level l the centroids of l-1.

    Each level seeds faiss with ``settings.seed + l``. Level l's concentration uses the
    squared distances of its members (points at l = 0, child centroids above); a point's
    level-l cluster is its level-(l-1) cluster's parent; ``alpha`` is the concentration's
    smoothing (PCL: 10). ``features`` may be streamed (:class:`PointRows`, see
    :func:`kmeans` for ``max_train_points``); ``on_level(k)`` is called after each level.
    """
    check_cluster_sizes(ks, hierarchical=True)
    features = _checked(features, ks[0])
    levels: list[ClusterLevel] = []
    points, device = features, ""
    for depth, k in enumerate(ks):
        result = kmeans(points, k, _seeded(settings, depth), max_train_points)
        device = result.device
        density = concentration(result.squared_distances, result.labels, k, temperature, alpha)
        if depth == 0:
            assignments = result.labels
        else:
            levels[-1].parents = result.labels
            assignments = result.labels[levels[-1].assignments]
        centroids = _normalize_rows(result.centroids)
        levels.append(ClusterLevel(centroids, density, assignments))
        points = centroids
        if on_level is not None:
            on_level(k)
    return Clustering(levels, hierarchical=True, device=device)


def flat_kmeans(
    features: np.ndarray | PointRows, ks: list[int], temperature: float,
    settings: KMeansSettings, alpha: float = 10.0, max_train_points: int | None = None,
    on_level: Callable[[int], None] | None = None,
) -> Clustering:  # fmt: skip
    """Independent k-means of the points for every k (PCL's several clusterings); ``alpha``
    is the concentration's smoothing (PCL: 10). ``features`` may be streamed
    (:class:`PointRows`, see :func:`kmeans` for ``max_train_points``); ``on_level(k)`` is
    called after each clustering (progress)."""
    check_cluster_sizes(ks, hierarchical=False)
    features = _checked(features, max(ks))
    levels, device = [], ""
    for position, k in enumerate(ks):
        result = kmeans(features, k, _seeded(settings, position), max_train_points)
        device = result.device
        density = concentration(result.squared_distances, result.labels, k, temperature, alpha)
        levels.append(ClusterLevel(_normalize_rows(result.centroids), density, result.labels))
        if on_level is not None:
            on_level(k)
    return Clustering(levels, hierarchical=False, device=device)


def _checked(features: np.ndarray | PointRows, k: int) -> np.ndarray | PointRows:
    """An array checked by :func:`check_points`; streamed rows checked for ``k <= N`` (their
    values are checked block by block as they are read)."""
    if not isinstance(features, PointRows):
        return check_points(features, k)
    check_cluster_sizes([k], hierarchical=False, points=len(features))
    return features


def _seeded(settings: KMeansSettings, offset: int) -> KMeansSettings:
    return KMeansSettings(settings.niter, settings.nredo, settings.seed + offset,
                          settings.spherical, settings.use_gpu)  # fmt: skip
