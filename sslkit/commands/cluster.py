"""``sslkit cluster``: (hierarchical) k-means of a feature file on faiss, with AMI/NMI/purity."""

from __future__ import annotations

import click

from sslkit.commands.common import (
    CommaList,
    debug_option,
    device_option,
    json_option,
    no_progress_option,
    print_table,
    renamed,
)
from sslkit.utils.jsonout import write_json


@click.command()
@click.option("--features", type=click.Path(dir_okay=False), required=True, metavar="FILE",
              help="Features to cluster: a feature file from 'sslkit extract', another tool's "
                   "HDF5 file with a 'features' dataset (and optional 'labels'), or a .npy "
                   "array (N x D).")
@click.option("--labels-file", type=click.Path(dir_okay=False), default=None,
              metavar="FILE.npy",
              help="Labels (N integers) of --features from another tool that carry none: "
                   "AMI / NMI / purity are reported against them (without labels, none are).")
@click.option("--clusters", default="1000", show_default=True,
              type=CommaList(int, example="3000,2000,1000"),
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
@click.option("--out", type=click.Path(dir_okay=False), required=True,
              help="Clustering file to write (HDF5).")
@click.option("--plot", type=click.Path(dir_okay=False), default=None,
              metavar="FILE.png",
              help="Also draw a 2-D t-SNE of a sample of the features, coloured by the finest "
                   "level's clusters and by label (needs matplotlib: pip install 'sslkit[plots]').")
@click.option("--plot-sample", type=click.IntRange(min=10), default=2000, show_default=True,
              help="Points in the --plot t-SNE (a seeded random sample).")
@click.option("--force", is_flag=True, help="Overwrite existing output files.")
@no_progress_option
@device_option
@json_option
@debug_option
@renamed("--k", "--clusters", "clusters", type=CommaList(int, example="3000,2000,1000"))
def cluster(json_path, **options) -> None:
    """k-means of features on faiss (GPU index when present); AMI/NMI/purity if labelled.

    \b
    Examples:
      sslkit cluster --features train.h5 --clusters 10,100 --out clusters.h5
      sslkit cluster --features train.h5 --clusters 3000,2000,1000 --hierarchical --out h.h5
      sslkit cluster --features train.h5 --clusters 10 --out clusters.h5 --plot clusters.png
      sslkit cluster --features emb.npy --labels-file labels.npy --clusters 10 --out c.h5
    """
    from sslkit.api.cluster import cluster as run

    result = run(**options)
    output = result.to_dict()
    for note in output["notes"]:
        click.echo(f"note: {note}", err=True)
    _print(output, any("ami" in row for row in output["levels"]), json_path)
    write_json(output, json_path)


def _print(output: dict, labelled: bool, json_path: str | None) -> None:
    columns = ["level", "k", "non-empty"] + (["AMI %", "NMI %", "purity %"] if labelled else [])
    rows = [[row["level"], row["k"], row["non_empty"]]
            + ([row["ami"], row["nmi"], row["purity"]] if labelled else [])
            for row in output["levels"]]  # fmt: skip
    title = (f"{'hierarchical ' if output['hierarchical'] else ''}k-means of "
             f"{output['points']} x {output['dim']} on {output['device']} "
             f"({output['clustering_seconds']:.1f} s)")  # fmt: skip
    if output["plot"]:
        title += f"; t-SNE picture in {output['plot']['path']}"
    print_table(title, columns, rows, to_stderr=json_path == "-")
