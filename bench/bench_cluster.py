"""`sslkit cluster` k-means vs scikit-learn's KMeans on the same features, and HCSC's step.

    python bench/bench_cluster.py [--points 100000] [--dim 128] [--k 1000] [--niter 20]

Features: a mixture of 2,000 Gaussian blobs on the unit sphere (clustered like real
embeddings), L2-normalised. Compared in one process:

* flat k-means, k clusters, ``niter`` iterations, one run: sslkit (faiss; the GPU index
  when present) vs ``sklearn.cluster.KMeans(k, max_iter=niter)`` with its default init
  (k-means++) and ``n_init``;
* the same through the CLI (``sslkit cluster`` in a subprocess: start-up, HDF5 read,
  clustering, AMI/NMI/purity, HDF5 write);
* HCSC's hierarchical k-means as run every epoch (3000-2000-1000, nredo 5) on 60,000
  points (Fashion-MNIST's size).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def blobs(points: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit-norm points around 2,000 random directions, and their blob labels."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(2000, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    labels = rng.integers(0, len(centres), points)
    x = centres[labels] + 0.05 * rng.normal(size=(points, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), labels


def timed(fn) -> tuple[float, object]:
    """(seconds, result) of one call."""
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def main() -> None:
    """Print the timings and ratios as JSON."""
    from sklearn.cluster import KMeans

    from sslkit.clustering.kmeans import KMeansSettings, flat_kmeans, hierarchical_kmeans
    from sslkit.features.store import FeatureSet, write_features

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--niter", type=int, default=20)
    args = parser.parse_args()
    x, labels = blobs(args.points, args.dim)
    settings = KMeansSettings(niter=args.niter, nredo=1, seed=0)
    sslkit_s, clustering = timed(lambda: flat_kmeans(x, [args.k], 0.2, settings))
    sklearn_s, _ = timed(lambda: KMeans(args.k, max_iter=args.niter, random_state=0).fit(x))
    with tempfile.TemporaryDirectory() as folder:
        features = Path(folder) / "features.h5"
        write_features(features, FeatureSet(x, labels, np.arange(len(x)), {"source": "blobs"}))
        command = [sys.executable, "-m", "sslkit", "cluster", "--features", str(features),
                   "--k", str(args.k), "--niter", str(args.niter),
                   "--out", str(Path(folder) / "clusters.h5"), "--json", "-"]  # fmt: skip
        cli_s, completed = timed(lambda: subprocess.run(command, capture_output=True,
                                                        text=True, check=True))  # fmt: skip
        cli = json.loads(completed.stdout)
    fmnist_sized = x[:60_000]
    hier_s, _ = timed(lambda: hierarchical_kmeans(
        fmnist_sized, [3000, 2000, 1000], 0.2, KMeansSettings(niter=20, nredo=5, seed=0)))
    print(json.dumps({
        "points": args.points, "dim": args.dim, "k": args.k, "niter": args.niter,
        "device": clustering.device,
        "sslkit_kmeans_seconds": round(sslkit_s, 2),
        "sklearn_kmeans_seconds": round(sklearn_s, 2),
        "ratio_sslkit_vs_sklearn": round(sslkit_s / sklearn_s, 4),
        "cli_seconds": round(cli_s, 2),
        "cli_ami_vs_blobs": round(cli["levels"][0]["ami"], 3),
        "ratio_cli_vs_sklearn": round(cli_s / sklearn_s, 4),
        "hierarchical_3000_2000_1000_on_60k_nredo5_seconds": round(hier_s, 2),
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
