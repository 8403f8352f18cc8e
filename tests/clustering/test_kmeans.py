"""faiss k-means, PCL's concentration and HCSC's hierarchical levels (the authors' settings)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sslkit.clustering.kmeans import (
    KMeansSettings,
    check_points,
    concentration,
    flat_kmeans,
    hierarchical_kmeans,
    kmeans,
)
from sslkit.clustering.metrics import cluster_agreement
from sslkit.errors import BadInput

T = 0.2
HAND = 0.3 / math.log(12)  # squared distances {0.04, 0.16}: mean(0.2, 0.4) / ln(2 + 10)
SMALL = 0.1 / math.log(12)  # squared distances {0.01, 0.01}


def _blobs(n_per: int = 40, centers: int = 5, dim: int = 16, noise: float = 0.05, seed: int = 0):
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(centers, dim))
    points = np.repeat(means, n_per, axis=0) + noise * rng.normal(size=(centers * n_per, dim))
    return points.astype(np.float32), np.repeat(np.arange(centers), n_per)


def _settings(**overrides) -> KMeansSettings:
    values = {"niter": 20, "nredo": 2, "seed": 0, "use_gpu": False} | overrides
    return KMeansSettings(**values)


def _reference_concentration(squared, labels, k, temperature, alpha=10.0):
    """PCL's concentration written as a loop over clusters."""
    phi = np.zeros(k)
    several = []
    for c in range(k):
        members = np.sqrt(squared[labels == c].astype(np.float64))
        if len(members) > 1:
            phi[c] = members.mean() / math.log(len(members) + alpha)
            several.append(c)
    for c in range(k):
        if c not in several:
            phi[c] = max(phi[several])
    low, high = np.percentile(phi, 10), np.percentile(phi, 90)
    phi = np.clip(phi, low, high)
    mean = phi.mean()
    return temperature * phi / mean, temperature * low / mean, temperature * high / mean


def test_hand_example_without_clipping():
    """Five {0.04,0.16} clusters and five {0.01,0.01}: phi = 0.1207 and 0.0402 before rescale."""
    squared = np.array([0.04, 0.16] * 5 + [0.01, 0.01] * 5, dtype=np.float32)
    labels = np.repeat(np.arange(10), 2)
    phi = concentration(squared, labels, 10, T).astype(np.float64)
    # P10 and P90 fall between equal values, so clipping is the identity: undo the rescale
    pre_mean = (HAND + SMALL) / 2
    assert phi[:5] * pre_mean / T == pytest.approx([HAND] * 5, rel=1e-5)
    assert phi[5:] * pre_mean / T == pytest.approx([SMALL] * 5, rel=1e-5)
    assert HAND == pytest.approx(0.1207, abs=1e-4)
    assert phi[0] / phi[5] == pytest.approx(3.0, rel=1e-5)


def test_mean_is_temperature_and_values_within_clipped_range():
    """On random clusters phi matches the loop reference, has mean T and lies in [P10, P90]."""
    rng = np.random.default_rng(3)
    k = 13
    labels = rng.integers(0, k, size=200)
    labels[labels == 4] = 5  # cluster 4 is empty
    labels[labels == 7] = 8
    labels[0] = 7  # cluster 7 is a singleton
    squared = rng.uniform(0.0, 0.5, size=200).astype(np.float32)
    for temperature in (0.2, 0.07):
        phi = concentration(squared, labels, k, temperature)
        assert phi.shape == (k,) and phi.dtype == np.float32
        phi = phi.astype(np.float64)
        expected, low, high = _reference_concentration(squared, labels, k, temperature)
        assert phi == pytest.approx(expected, rel=1e-5)
        assert phi.mean() == pytest.approx(temperature, rel=1e-6)
        assert (phi >= low * (1 - 1e-6)).all() and (phi <= high * (1 + 1e-6)).all()
        assert len(np.unique(np.round(phi, 6))) > 2  # clipping did not flatten everything


def test_small_clusters_get_the_maximum():
    """A singleton and an empty cluster both receive the largest phi of the others."""
    # 5 small clusters, 4 hand clusters, 1 singleton, 1 empty: P10/P90 do not clip
    squared = np.array([0.01, 0.01] * 5 + [0.04, 0.16] * 4 + [0.5], dtype=np.float32)
    labels = np.array([c for c in range(9) for _ in range(2)] + [9])
    phi = concentration(squared, labels, 11, T).astype(np.float64)
    assert phi[9] == pytest.approx(phi[5], rel=1e-6) and phi[10] == pytest.approx(phi[5], rel=1e-6)
    assert phi[9] / phi[0] == pytest.approx(HAND / SMALL, rel=1e-5)  # not sqrt(0.5)/ln(11)
    assert phi.mean() == pytest.approx(T, rel=1e-6)


def test_hierarchical_invariants():
    """Assignments follow the parent maps; unit centroids; parents in range; mean phi = T."""
    points, _ = _blobs()
    ks = [12, 6, 3]
    clustering = hierarchical_kmeans(points, ks, T, _settings())
    assert clustering.hierarchical and clustering.sizes == ks
    assert clustering.device == "faiss-cpu"
    levels = clustering.levels
    for depth, level in enumerate(levels):
        k = ks[depth]
        assert level.centroids.shape == (k, 16) and level.density.shape == (k,)
        assert np.allclose(np.linalg.norm(level.centroids, axis=1), 1.0, atol=1e-5)
        assert level.assignments.shape == (len(points),)
        assert level.assignments.min() >= 0 and level.assignments.max() < k
        assert float(level.density.astype(np.float64).mean()) == pytest.approx(T, rel=1e-6)
        if depth + 1 < len(levels):
            assert level.parents.shape == (k,) and level.parents.dtype == np.int64
            assert level.parents.min() >= 0 and level.parents.max() < ks[depth + 1]
            assert np.array_equal(levels[depth + 1].assignments, level.parents[level.assignments])
        else:
            assert level.parents is None


def test_upper_level_clusters_the_normalised_centroids_below():
    """Level 1 = k-means (seed + 1) of level 0's unit centroids; phi from child distances."""
    points, _ = _blobs()
    settings = _settings(seed=4)
    clustering = hierarchical_kmeans(points, [12, 6], T, settings)
    lower = clustering.levels[0].centroids
    again = kmeans(lower, 6, _settings(seed=5))
    assert np.array_equal(clustering.levels[0].parents, again.labels)
    density = concentration(again.squared_distances, again.labels, 6, T)
    assert np.allclose(clustering.levels[1].density, density, rtol=1e-6)
    norms = np.linalg.norm(again.centroids, axis=1, keepdims=True)
    assert np.allclose(clustering.levels[1].centroids, again.centroids / norms, atol=1e-6)


def test_flat_kmeans_recovers_separated_blobs():
    """Five well-separated blobs with k = 5 are recovered (AMI, purity = 1)."""
    points, labels = _blobs()
    # faiss seeds with random points (no k-means++): enough restarts find the blobs
    clustering = flat_kmeans(points, [5, 10], T, _settings(nredo=10))
    assert not clustering.hierarchical and clustering.sizes == [5, 10]
    assert all(level.parents is None for level in clustering.levels)
    scores = cluster_agreement(clustering.levels[0].assignments, labels)
    assert scores["ami"] > 0.99 and scores["purity"] == 1.0
    # the finer clustering splits blobs but never mixes them
    assert cluster_agreement(clustering.levels[1].assignments, labels)["purity"] == 1.0


def test_same_seed_same_result():
    """Two runs with the same seed give identical centroids, assignments and phi."""
    points, _ = _blobs(noise=0.8)
    first = hierarchical_kmeans(points, [10, 4], T, _settings(seed=7))
    second = hierarchical_kmeans(points, [10, 4], T, _settings(seed=7))
    for a, b in zip(first.levels, second.levels, strict=True):
        assert np.array_equal(a.centroids, b.centroids)
        assert np.array_equal(a.assignments, b.assignments)
        assert np.array_equal(a.density, b.density)


@pytest.mark.parametrize(
    "points, k",
    [
        (np.zeros((5, 3)), 6),  # k > n
        (np.zeros((5, 3)), 0),
        (np.zeros((0, 3)), 1),  # empty
        (np.zeros((5, 0)), 1),
        (np.zeros(5), 1),  # not a matrix
        (np.array([[0.0, np.nan], [1.0, 1.0]]), 1),
        (np.array([[0.0, np.inf], [1.0, 1.0]]), 1),
    ],
)
def test_check_points_refuses_bad_input(points, k):
    """Bad shapes, NaN/inf and k outside [1, n] are BadInput."""
    with pytest.raises(BadInput):
        check_points(points, k)


def test_check_points_returns_contiguous_float32():
    """Valid points come back as a C-contiguous float32 matrix."""
    points = check_points(np.arange(12, dtype=np.float64).reshape(3, 4).T, 4)
    assert points.dtype == np.float32 and points.flags["C_CONTIGUOUS"] and points.shape == (4, 3)


@pytest.mark.parametrize("build", [hierarchical_kmeans, flat_kmeans])
@pytest.mark.parametrize("ks", [[], [0], [5, -1], [300]])
def test_bad_sizes_are_bad_input(build, ks):
    """No sizes, non-positive sizes or k > N are refused by both builders."""
    points, _ = _blobs()
    with pytest.raises(BadInput):
        build(points, ks, T, _settings())


def test_growing_hierarchical_sizes_are_bad_input():
    """Hierarchical sizes must not grow bottom-up; flat clusterings may list any order."""
    points, _ = _blobs()
    with pytest.raises(BadInput, match="must not grow"):
        hierarchical_kmeans(points, [4, 8], T, _settings())
    assert flat_kmeans(points, [4, 8], T, _settings(nredo=1)).sizes == [4, 8]


def test_nan_features_are_bad_input():
    """A NaN feature row is refused before faiss runs."""
    points, _ = _blobs()
    points[3, 2] = np.nan
    with pytest.raises(BadInput, match="NaN"):
        hierarchical_kmeans(points, [4, 2], T, _settings())


def _normalized(points: np.ndarray) -> np.ndarray:
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("build", [hierarchical_kmeans, flat_kmeans])
def test_streamed_rows_from_disk_equal_the_in_memory_clustering(tmp_path, build):
    """A feature file read in 7-row blocks (PointRows over open_features) gives exactly the
    clustering of the normalised array in memory: same sample (all points), same search."""
    from sslkit.clustering.kmeans import PointRows
    from sslkit.features.store import FeatureSet, open_features, write_features

    points, labels = _blobs(noise=0.5)
    write_features(tmp_path / "f.h5", FeatureSet(points, labels, np.arange(len(points)),
                                                 {"layer": "backbone", "dataset": "blobs",
                                                  "split": "train"}))  # fmt: skip
    memory = build(_normalized(points), [10, 4], T, _settings())
    with open_features(tmp_path / "f.h5") as data:
        streamed = build(PointRows(data.features, block_rows=7), [10, 4], T, _settings())
    for a, b in zip(memory.levels, streamed.levels, strict=True):
        assert np.array_equal(a.assignments, b.assignments)
        assert np.allclose(a.centroids, b.centroids, atol=1e-6)
        assert np.allclose(a.density, b.density, atol=1e-6)


def test_max_train_points_trains_on_a_seeded_sample_and_assigns_every_point():
    """With max_train_points < N, training sees a seeded sample (same seed, same result),
    and still every point gets its nearest centroid and its squared distance."""
    from sslkit.clustering.kmeans import PointRows

    points, truth = _blobs(n_per=60, noise=0.05)
    rows = PointRows(points, normalize=False, block_rows=50)
    first = kmeans(rows, 5, _settings(), max_train_points=40)
    again = kmeans(rows, 5, _settings(), max_train_points=40)
    assert np.array_equal(first.centroids, again.centroids)
    squared = ((points[:, None, :] - first.centroids[None]) ** 2).sum(-1)
    assert np.array_equal(first.labels, squared.argmin(1))
    assert np.allclose(first.squared_distances, squared.min(1), rtol=1e-4, atol=1e-5)
    assert cluster_agreement(first.labels, truth)["ami"] > 0.99  # 40 points find 5 blobs


def test_streamed_rows_refuse_nan_blocks_and_too_many_clusters():
    """Bad values are found in the block that holds them; k > N before anything runs."""
    from sslkit.clustering.kmeans import PointRows

    points, _ = _blobs()
    with pytest.raises(BadInput, match="use k <= 200"):
        hierarchical_kmeans(PointRows(points), [300], T, _settings())
    points[150, 3] = np.inf
    with pytest.raises(BadInput, match="NaN or infinite"):
        kmeans(PointRows(points, block_rows=64), 4, _settings())
