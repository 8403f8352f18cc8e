"""``sslkit cluster``: (hierarchical) k-means of a feature file on faiss, with AMI/NMI/purity."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from sslkit.commands.common import debug_option, device_option, json_option
from sslkit.commands.knn import parse_ks

if TYPE_CHECKING:
    import numpy as np

    from sslkit.clustering.kmeans import Clustering, PointRows


@click.command()
@click.option("--features", "features_path", type=click.Path(dir_okay=False), required=True,
              help="Feature file from 'sslkit extract'.")
@click.option("--k", "ks", default="1000", show_default=True, callback=parse_ks,
              help="Numbers of clusters, comma-separated (bottom-up when --hierarchical).")
@click.option("--hierarchical", is_flag=True,
              help="Each level clusters the previous level's centroids (HCSC).")
@click.option("--niter", type=click.IntRange(min=1), default=20, show_default=True,
              help="k-means iterations.")
@click.option("--nredo", type=click.IntRange(min=1), default=1, show_default=True,
              help="Restarts; the best objective is kept (PCL/HCSC training use 5).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="faiss seed of the first level (level l uses seed + l).")
@click.option("--spherical", is_flag=True, help="Re-normalise centroids every iteration.")
@click.option("--no-normalize", is_flag=True,
              help="Cluster the raw features (default: L2-normalised, cosine geometry).")
@click.option("--max-train-points", type=click.IntRange(min=1), default=None,
              help="k-means trains on a seeded sample of at most this many points (default: "
                   "k x 1000, the authors' setting); every point is then assigned. Bounds the "
                   "memory of files larger than RAM: the rest is read in blocks.")
@click.option("--temperature", type=click.FloatRange(min=0, min_open=True), default=0.2,
              show_default=True, help="Mean of the per-cluster concentrations written.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), required=True,
              help="Clustering file to write (HDF5).")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None,
              metavar="FILE.png",
              help="Also draw a 2-D t-SNE of a sample of the features, coloured by the finest "
                   "level's clusters and by label (needs matplotlib: pip install 'sslkit[plots]').")
@click.option("--plot-sample", type=click.IntRange(min=10), default=2000, show_default=True,
              help="Points in the --plot t-SNE (a seeded random sample).")
@click.option("--force", is_flag=True, help="Overwrite existing output files.")
@device_option
@json_option
@debug_option
def cluster(features_path, ks, hierarchical, niter, nredo, seed, spherical, no_normalize,
            max_train_points, temperature, out_path, plot_path, plot_sample, force, device,
            json_path) -> None:  # fmt: skip
    """k-means of features on faiss (GPU index when present); AMI/NMI/purity if labelled.

    \b
    Examples:
      sslkit cluster --features train.h5 --k 10,100 --out clusters.h5
      sslkit cluster --features train.h5 --k 3000,2000,1000 --hierarchical --out h.h5 --json -
      sslkit cluster --features train.h5 --k 10 --out clusters.h5 --plot clusters.png
    """
    import time
    from pathlib import Path

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
    from sslkit.features.store import open_features
    from sslkit.utils.atomic import sha256_file
    from sslkit.utils.jsonout import write_json

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
    with open_features(features_path) as data:
        points = PointRows(data.features, normalize=not no_normalize)
        clustering = build(points, ks, temperature, settings, max_train_points=max_train_points)
        clustering_seconds = time.perf_counter() - started
        labelled = bool((data.labels >= 0).any())
        levels = []
        for depth, level in enumerate(clustering.levels):
            row = {"level": depth, "k": len(level.centroids),
                   "non_empty": int(len(np.unique(level.assignments)))}  # fmt: skip
            if labelled:
                known = data.labels >= 0
                row |= cluster_agreement(level.assignments[known], data.labels[known])
            levels.append(row)
        attrs = {
            "features_file": str(features_path), "features_sha256": sha256_file(features_path),
            "ks": ",".join(map(str, ks)), "niter": niter, "nredo": nredo, "seed": seed,
            "spherical": spherical, "normalized": not no_normalize, "temperature": temperature,
            "max_train_points": max_train_points or 0,
            **{f"features_{key}": value for key, value in data.attrs.items()},
        }  # fmt: skip
        write_clusters(out_path, clustering, data.indices, attrs)
        plot = None
        if plot_path is not None:
            plot = _plot(points, clustering, levels, data.labels if labelled else None, plot_path,
                         plot_sample, seed, features_path)  # fmt: skip
    output = {"out": str(out_path), "device": clustering.device, "hierarchical": hierarchical,
              "points": len(points), "dim": points.dim, "levels": levels, "plot": plot,
              "max_train_points": max_train_points,
              "clustering_seconds": round(clustering_seconds, 3),
              "seconds": round(time.perf_counter() - started, 3)}  # fmt: skip
    _print(output, labelled, json_path)
    write_json(output, json_path)


def _check_plot_path(plot_path: str, out_path: str) -> None:
    """--plot names a new .png file (not the clustering file); matplotlib is installed."""
    from pathlib import Path

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
    from pathlib import Path

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


def _print(output: dict, labelled: bool, json_path: str | None) -> None:
    from sslkit.commands.common import print_table

    columns = ["level", "k", "non-empty"] + (["AMI", "NMI", "purity"] if labelled else [])
    rows = [[row["level"], row["k"], row["non_empty"]]
            + ([row["ami"], row["nmi"], row["purity"]] if labelled else [])
            for row in output["levels"]]  # fmt: skip
    title = (f"{'hierarchical ' if output['hierarchical'] else ''}k-means of "
             f"{output['points']} x {output['dim']} on {output['device']} "
             f"({output['clustering_seconds']:.1f} s)")  # fmt: skip
    if output["plot"]:
        title += f"; t-SNE picture in {output['plot']['path']}"
    print_table(title, columns, rows, to_stderr=json_path == "-")
