"""``sslkit cluster``: (hierarchical) k-means of a feature file on faiss, with AMI/NMI/purity."""

from __future__ import annotations

import click

from sslkit.commands.common import debug_option, device_option, json_option
from sslkit.commands.knn import parse_ks


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
@click.option("--temperature", type=click.FloatRange(min=0, min_open=True), default=0.2,
              show_default=True, help="Mean of the per-cluster concentrations written.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), required=True,
              help="Clustering file to write (HDF5).")
@click.option("--force", is_flag=True, help="Overwrite an existing output file.")
@device_option
@json_option
@debug_option
def cluster(features_path, ks, hierarchical, niter, nredo, seed, spherical, no_normalize,
            temperature, out_path, force, device, json_path) -> None:  # fmt: skip
    """k-means of features on faiss (GPU index when present); AMI/NMI/purity if labelled.

    \b
    Examples:
      sslkit cluster --features train.h5 --k 10,100 --out clusters.h5
      sslkit cluster --features train.h5 --k 3000,2000,1000 --hierarchical --out h.h5 --json -
    """
    import time
    from pathlib import Path

    import numpy as np

    from sslkit.cluster.kmeans import KMeansSettings, flat_kmeans, hierarchical_kmeans
    from sslkit.cluster.metrics import cluster_agreement
    from sslkit.cluster.store import write_clusters
    from sslkit.errors import BadInput
    from sslkit.features.store import read_features
    from sslkit.utils.atomic import sha256_file
    from sslkit.utils.jsonout import write_json

    if Path(out_path).exists() and not force:
        raise BadInput(f"{out_path} exists: pass --force to overwrite it")
    started = time.perf_counter()
    data = read_features(features_path)
    points = np.asarray(data.features, dtype=np.float32)
    if not no_normalize:
        points = points / np.maximum(np.linalg.norm(points, axis=1, keepdims=True), 1e-12)
    settings = KMeansSettings(niter=niter, nredo=nredo, seed=seed, spherical=spherical,
                              use_gpu={"auto": None, "cpu": False, "cuda": True}[device])
    build = hierarchical_kmeans if hierarchical else flat_kmeans
    clustering = build(points, ks, temperature, settings)
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
        **{f"features_{key}": value for key, value in data.attrs.items()},
    }  # fmt: skip
    write_clusters(out_path, clustering, data.indices, attrs)
    output = {"out": str(out_path), "device": clustering.device, "hierarchical": hierarchical,
              "points": len(points), "dim": int(points.shape[1]), "levels": levels,
              "clustering_seconds": round(clustering_seconds, 3),
              "seconds": round(time.perf_counter() - started, 3)}  # fmt: skip
    _print(output, labelled, json_path)
    write_json(output, json_path)


def _print(output: dict, labelled: bool, json_path: str | None) -> None:
    from sslkit.commands.common import print_table

    columns = ["level", "k", "non-empty"] + (["AMI", "NMI", "purity"] if labelled else [])
    rows = [[row["level"], row["k"], row["non_empty"]]
            + ([row["ami"], row["nmi"], row["purity"]] if labelled else [])
            for row in output["levels"]]  # fmt: skip
    title = (f"{'hierarchical ' if output['hierarchical'] else ''}k-means of "
             f"{output['points']} x {output['dim']} on {output['device']} "
             f"({output['clustering_seconds']:.1f} s)")  # fmt: skip
    print_table(title, columns, rows, to_stderr=json_path == "-")
