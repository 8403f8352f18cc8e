"""Large feature files: time and peak memory of writing, kNN and k-means at 1 M x 128.

    python bench/bench_large_features.py [--rows 1000000] [--dim 128] [--queries 10000]
                                         [--k 1000] [--extract fashion-mnist]

1. A synthetic N x D float32 feature file (Gaussian-mixture rows, 100 classes) is written
   block by block through ``FeatureWriter``; reference: the bytes of the N x D matrix.
2. ``sslkit knn --train BIG --test QUERIES`` in a subprocess; reference: a plain chunked
   ``torch.mm`` of the same product in this process (GFLOP/s).
3. ``sslkit cluster --features BIG --k K`` (training sample: all rows up to k x 1000), and
   again with ``--max-train-points M`` (a seeded sample of M rows; every row is still
   assigned); reference: ``faiss.Kmeans`` on the same array in this process (same k,
   iterations and at most k x 1000 training points).
4. With ``--extract SPEC``: ``sslkit extract`` of SPEC's training split (streaming, the
   shipped path) vs the in-memory path (``compute_features`` + ``write_features``), each in
   its own subprocess; reference: each other, and the N x D bytes.

Peak memory is each command's own maximum resident set (``wait4`` in a small launcher), next to the
floor of the same command on the small query file (what python, torch and faiss hold before
any feature): ``above_floor_mib`` is the memory the N x D data costs, to compare with the
N x D matrix itself.
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

IN_MEMORY_EXTRACT = """
import sys, torch
from sslkit.features.extract import load_feature_network
from sslkit.features.service import compute_features, load_dataset
from sslkit.features.store import write_features
network = load_feature_network(sys.argv[1], "backbone")
dataset = load_dataset(sys.argv[2], "train", network)
write_features(sys.argv[3], compute_features(network, dataset, torch.device("cpu"), 256))
"""


# Runs its arguments as a grandchild and reports that process's own peak RSS. Needed because
# Linux keeps the larger of the pre- and post-exec peak in ru_maxrss: a command spawned
# straight from this (large) process would be charged this process's memory.
MEASURE = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
sys.stderr.write(f"\\nPEAK_RSS_KIB {usage.ru_maxrss}\\n")
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_measured(command: list[str]) -> dict:
    """Wall seconds, the command's own peak RSS (MiB) and its JSON stdout."""
    started = time.perf_counter()
    process = subprocess.run([sys.executable, "-c", MEASURE, *command], capture_output=True)
    seconds = time.perf_counter() - started
    if process.returncode:
        raise SystemExit(f"{' '.join(command[:5])} failed: {process.stderr.decode()[-2000:]}")
    peak_kib = int(process.stderr.decode().rsplit("PEAK_RSS_KIB", 1)[1].split()[0])
    text = process.stdout.strip()
    return {"seconds": round(seconds, 2), "peak_rss_mib": round(peak_kib / 1024, 1),
            "output": json.loads(text) if text.startswith(b"{") else None}


def synthetic_file(path: Path, rows: int, dim: int, classes: int, seed: int,
                   block: int = 65536) -> float:  # fmt: skip
    """Write a Gaussian-mixture feature file block by block; return the seconds it took."""
    from sslkit.features.store import FeatureWriter

    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(0).normal(size=(classes, dim)).astype(np.float32)
    labels = rng.integers(0, classes, size=rows)
    attrs = {"layer": "backbone", "dataset": f"synthetic-{rows}x{dim}", "split": "train",
             "normalized": True}  # fmt: skip
    started = time.perf_counter()
    with FeatureWriter(path, labels, np.arange(rows), attrs) as writer:
        for start in range(0, rows, block):
            part = labels[start : start + block]
            rows_ = centres[part] + rng.normal(scale=2.0, size=(len(part), dim)).astype(np.float32)
            rows_ /= np.linalg.norm(rows_, axis=1, keepdims=True)
            writer.write(start, rows_)
    return time.perf_counter() - started


def reference_mm_seconds(train: np.ndarray, test: np.ndarray, chunk: int = 512) -> float:
    """The similarity product alone, chunk by chunk, with torch.mm (the kNN reference)."""
    import torch

    bank_t = torch.from_numpy(train).t().contiguous()
    queries = torch.from_numpy(test)
    started = time.perf_counter()
    for start in range(0, len(queries), chunk):
        _ = (queries[start : start + chunk] @ bank_t)[:, 0].sum().item()
    return time.perf_counter() - started


def reference_kmeans_seconds(points: np.ndarray, k: int, niter: int) -> float:
    """faiss.Kmeans on the same array, same k and iterations (the clustering reference)."""
    import faiss

    started = time.perf_counter()
    kmeans = faiss.Kmeans(points.shape[1], k, niter=niter, nredo=1, seed=0, verbose=False,
                          max_points_per_centroid=1000)  # sslkit's (the authors') setting
    kmeans.train(points)
    kmeans.index.search(points, 1)
    return time.perf_counter() - started


def main() -> None:
    """Run the benchmark and print JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--niter", type=int, default=10)
    parser.add_argument("--max-train-points", type=int, default=100_000,
                        help="training sample of the second sslkit cluster run")
    parser.add_argument("--extract", default=None, metavar="SPEC",
                        help="also compare streaming and in-memory extraction of SPEC")
    parser.add_argument("--checkpoint", default=None,
                        help="checkpoint for --extract (default: a 1-epoch MoCo run)")
    args = parser.parse_args()
    sslkit = [sys.executable, "-m", "sslkit"]
    results: dict = {"rows": args.rows, "dim": args.dim,
                     "matrix_mib": round(args.rows * args.dim * 4 / 2**20, 1)}  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        big, queries = folder / "big.h5", folder / "queries.h5"
        results["write_seconds"] = round(synthetic_file(big, args.rows, args.dim, 100, 1), 2)
        synthetic_file(queries, args.queries, args.dim, 100, 2)
        results["file_mib"] = round(big.stat().st_size / 2**20, 1)
        # the same commands on the small file: what they hold whatever the data
        knn_floor = run_measured([*sslkit, "knn", "--train", str(queries), "--test",
                                  str(queries), "--k", "20", "--json", "-"])["peak_rss_mib"]
        cluster_floor = run_measured([*sslkit, "cluster", "--features", str(queries), "--k",
                                      str(min(args.k, args.queries)), "--niter", "1", "--out",
                                      str(folder / "floor.h5"), "--json", "-"])["peak_rss_mib"]
        results["floor_rss_mib"] = {"knn": knn_floor, "cluster": cluster_floor}
        knn = run_measured([*sslkit, "knn", "--train", str(big), "--test", str(queries),
                            "--k", "20", "--json", "-"])  # fmt: skip
        from sslkit.features.store import read_features

        train, test = read_features(big).features, read_features(queries).features
        mm = reference_mm_seconds(train, test)
        flops = 2 * args.rows * args.queries * args.dim
        results["knn"] = {"seconds": knn["seconds"], "peak_rss_mib": knn["peak_rss_mib"],
                          "top1": knn["output"]["best"]["top1"],
                          "gflops_incl_startup": round(flops / knn["seconds"] / 1e9, 1),
                          "reference_mm_seconds": round(mm, 2),
                          "reference_mm_gflops": round(flops / mm / 1e9, 1),
                          "time_vs_reference": round(knn["seconds"] / mm, 2),
                          "above_floor_mib": round(knn["peak_rss_mib"] - knn_floor, 1)}

        reference = reference_kmeans_seconds(train, args.k, args.niter)
        del train, test
        results["cluster"] = {"reference_faiss_seconds": round(reference, 2)}
        for name, extra in (("default", []),
                            ("sampled", ["--max-train-points", str(args.max_train_points)])):
            run = run_measured([*sslkit, "cluster", "--features", str(big), "--k", str(args.k),
                                "--niter", str(args.niter), "--nredo", "1", "--out",
                                str(folder / f"clusters-{name}.h5"), *extra, "--force",
                                "--json", "-"])  # fmt: skip
            results["cluster"][name] = {
                "max_train_points": run["output"]["max_train_points"],
                "seconds": run["seconds"], "peak_rss_mib": run["peak_rss_mib"],
                "ami": run["output"]["levels"][0]["ami"],
                "time_vs_reference": round(run["seconds"] / reference, 2),
                "above_floor_mib": round(run["peak_rss_mib"] - cluster_floor, 1),
            }  # fmt: skip
        if args.extract:
            results["extract"] = compare_extraction(folder, args.extract, args.checkpoint,
                                                    sslkit)  # fmt: skip
    print(json.dumps(results, indent=2))


def compare_extraction(folder: Path, spec: str, checkpoint: str | None, sslkit: list[str]) -> dict:
    """Streaming ``sslkit extract`` vs the in-memory path on one dataset's training split."""
    if checkpoint is None:
        run = folder / "run"
        subprocess.run([*sslkit, "pretrain", "--method", "moco", "--data", f"{spec}@512",
                        "--epochs", "1", "--arch", "resnet18", "--workdir", str(run),
                        "--no-progress"], check=True, capture_output=True)  # fmt: skip
        checkpoint = str(run / "checkpoint.pt")
    streaming = run_measured([*sslkit, "extract", "--checkpoint", checkpoint, "--data", spec,
                              "--out", str(folder / "streamed.h5"), "--json", "-"])  # fmt: skip
    in_memory = run_measured([sys.executable, "-c", IN_MEMORY_EXTRACT, checkpoint, spec,
                              str(folder / "in-memory.h5")])  # fmt: skip
    rows, dim = streaming["output"]["rows"], streaming["output"]["dim"]
    return {"spec": spec, "rows": rows, "dim": dim,
            "matrix_mib": round(rows * dim * 4 / 2**20, 1),
            "streaming": {k: streaming[k] for k in ("seconds", "peak_rss_mib")},
            "in_memory": {k: in_memory[k] for k in ("seconds", "peak_rss_mib")},
            "peak_rss_saved_mib": round(in_memory["peak_rss_mib"]
                                        - streaming["peak_rss_mib"], 1)}  # fmt: skip


if __name__ == "__main__":
    main()
