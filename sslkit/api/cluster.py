"""``sslkit.cluster``: (hierarchical) k-means of a feature file on faiss, with AMI / NMI /
purity against the labels when they are known."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from sslkit.api.results import ClusterResult

if TYPE_CHECKING:
    import numpy as np

    from sslkit.clustering.kmeans import Clustering, PointRows


def cluster(features: str | Path, clusters: Sequence[int], out: str | Path, *,
            labels_file: str | Path | None = None, hierarchical: bool = False,
            niter: int = 20, nredo: int = 1, seed: int = 0,
            spherical: bool = False, no_normalize: bool = False,
            max_train_points: int | None = None, temperature: float = 0.2,
            plot: str | Path | None = None, plot_sample: int = 2000, force: bool = False,
            no_progress: bool = False, device: str = "auto") -> ClusterResult:  # fmt: skip
    """Cluster the rows of the feature file ``features`` into ``clusters`` clusters per level
    and write the clustering to ``out`` (HDF5); AMI, NMI and purity in % when labelled.

    ``features`` is an sslkit feature file, or features of another tool: an HDF5 file with
    a ``features`` dataset (N x D) and optional ``labels``, or a ``.npy`` array (N x D)
    whose labels, if any, come from the ``.npy`` file ``labels_file``; ``notes`` says that
    their provenance is unknown (and, without labels, that no AMI is reported).

    ``hierarchical``: each level clusters the previous level's centroids (HCSC; sizes
    bottom-up); otherwise one independent k-means per size. Features are L2-normalised
    unless ``no_normalize``; k-means trains on a seeded sample of at most
    ``max_train_points`` (default k x 1000) and assigns every row block by block. ``plot``
    draws a t-SNE picture of ``plot_sample`` rows (needs matplotlib).

    Example::

        sslkit.cluster("train.h5", [100, 50, 10], "clusters.h5", hierarchical=True).levels
    """
    import time

    import numpy as np

    from sslkit.clustering.kmeans import (
        KMeansSettings,
        PointRows,
        flat_kmeans,
        hierarchical_kmeans,
    )
    from sslkit.clustering.metrics import cluster_agreement
    from sslkit.clustering.store import write_clusters
    from sslkit.errors import BadInput
    from sslkit.features.store import is_foreign, open_any_features, provenance_note
    from sslkit.utils.atomic import sha256_file
    from sslkit.utils.progress import progress

    ks, features_path, out_path, plot_path = list(clusters), str(features), str(out), plot
    for path in (out_path, plot_path):
        if path is not None and Path(path).exists() and not force:
            raise BadInput(f"{path} exists: pass --force to overwrite it")
    if plot_path is not None:
        _check_plot_path(plot_path, out_path)
    started = time.perf_counter()
    settings = KMeansSettings(niter=niter, nredo=nredo, seed=seed, spherical=spherical,
                              use_gpu={"auto": None, "cpu": False, "cuda": True}[device])
    build = hierarchical_kmeans if hierarchical else flat_kmeans
    # the features stay on disk: k-means reads its training sample and assigns block by block
    with open_any_features(features_path, labels_file) as data:
        notes = []
        if is_foreign(data):
            notes.append(provenance_note(features_path))
            if not data.attrs["labelled"]:
                notes.append(f"{features_path} has no labels: no AMI / NMI / purity (give "
                             "--labels-file FILE.npy to score the clusters)")  # fmt: skip
        points = PointRows(data.features, normalize=not no_normalize)
        with progress(f"k-means of {len(points):,} x {points.dim}", len(ks), unit="levels",
                      enabled=not no_progress) as shown:  # fmt: skip
            clustering = build(points, ks, temperature, settings,
                               max_train_points=max_train_points,
                               on_level=lambda k: shown.update(advance=1, k=k))  # fmt: skip
        clustering_seconds = time.perf_counter() - started
        labelled = bool((data.labels >= 0).any())
        levels = []
        for depth, level in enumerate(clustering.levels):
            row = {"level": depth, "k": len(level.centroids),
                   "non_empty": int(len(np.unique(level.assignments)))}  # fmt: skip
            if labelled:
                known = data.labels >= 0
                agreement = cluster_agreement(level.assignments[known], data.labels[known])
                row |= {key: 100.0 * value for key, value in agreement.items()}  # in %
            levels.append(row)
        attrs = {
            "features_file": str(features_path), "features_sha256": sha256_file(features_path),
            "ks": ",".join(map(str, ks)), "niter": niter, "nredo": nredo, "seed": seed,
            "spherical": spherical, "normalized": not no_normalize, "temperature": temperature,
            "max_train_points": max_train_points or 0,
            **{f"features_{key}": value for key, value in data.attrs.items()},
        }  # fmt: skip
        write_clusters(out_path, clustering, data.indices, attrs)
        drawn = None
        if plot_path is not None:
            drawn = _plot(points, clustering, levels, data.labels if labelled else None, plot_path,
                         plot_sample, seed, features_path)  # fmt: skip
    output = {"out": str(out_path), "device": clustering.device, "hierarchical": hierarchical,
              "points": len(points), "dim": points.dim, "levels": levels, "plot": drawn,
              "max_train_points": max_train_points,
              "clustering_seconds": round(clustering_seconds, 3),
              "seconds": round(time.perf_counter() - started, 3),
              "score_unit": "percent", "notes": notes}  # fmt: skip
    return ClusterResult(output)


def _check_plot_path(plot_path: str, out_path: str) -> None:
    """--plot names a new .png file (not the clustering file); matplotlib is installed."""
    from sslkit.errors import BadInput
    from sslkit.utils.plotting import require_matplotlib

    if Path(plot_path).suffix.lower() != ".png":
        raise BadInput(f"--plot {plot_path}: the picture is a PNG, name it FILE.png")
    if Path(plot_path).resolve() == Path(out_path).resolve():
        raise BadInput("--plot and --out name the same file: give the picture its own name")
    require_matplotlib("--plot")  # fail before clustering, not after it


def _plot(points: PointRows, clustering: Clustering, levels: list[dict],
          labels: np.ndarray | None, plot_path: str, sample: int, seed: int,
          features_path: str) -> dict:  # fmt: skip
    """t-SNE picture of the finest level (most clusters) and the labels; what was drawn."""
    from sslkit.clustering.plot import plot_clusters, sample_rows

    finest = max(range(len(levels)), key=lambda depth: (levels[depth]["k"], -depth))
    row = levels[finest]
    cluster_title = f"clusters: level {finest}, k = {row['k']}"
    if "ami" in row:
        cluster_title += f", AMI {row['ami']:.3f}"
    shown = sample_rows(len(points), sample, seed)  # the sample plot_clusters would draw
    title = f"t-SNE of {len(shown)} of {len(points)} features in {Path(features_path).name}"
    drawn = plot_clusters(points.gather(shown), clustering.levels[finest].assignments[shown],
                          None if labels is None else labels[shown], plot_path,
                          sample=len(shown), seed=seed, cluster_title=cluster_title,
                          title=title)  # fmt: skip
    return {**drawn, "level": finest, "k": row["k"]}


