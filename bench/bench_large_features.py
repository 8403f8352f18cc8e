"""Large feature files: time and peak memory of writing, kNN and k-means at 1 M x 128.

    python bench/bench_large_features.py [--rows 1000000] [--dim 128] [--queries 10000]
                                         [--k 1000] [--extract fashion-mnist]

1. A synthetic N x D float32 feature file (Gaussian-mixture rows, 100 classes) is written
   block by block through ``FeatureWriter``; reference: the bytes of the N x D matrix.
2. ``sslkit knn --train BIG --test QUERIES`` in a subprocess; reference: a plain chunked
   ``torch.mm`` of the same product in this process (GFLOP/s).
3. ``sslkit cluster --features BIG --k K``; reference: ``faiss.Kmeans`` on the same array
   in this process (same k, iterations and subsample).
4. With ``--extract SPEC``: ``sslkit extract`` of SPEC's training split (streaming, the
   shipped path) vs the in-memory path (``compute_features`` + ``write_features``), each in
   its own subprocess; reference: each other, and the N x D bytes.

Peak memory is each subprocess's own maximum resident set (``os.wait4``), next to the
baseline of a process that only imports torch, faiss, h5py and sslkit.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BASELINE = "import torch, faiss, h5py, sslkit.cli, sslkit.eval.knn, sslkit.cluster.kmeans"
IN_MEMORY_EXTRACT = """
import sys, torch
from sslkit.features.extract import load_feature_network
from sslkit.features.service import compute_features, load_dataset
from sslkit.features.store import write_features
network = load_feature_network(sys.argv[1], "backbone")
dataset = load_dataset(sys.argv[2], "train", network)
write_features(sys.argv[3], compute_features(network, dataset, torch.device("cpu"), 256))
"""


def run_measured(command: list[str]) -> dict:
    """Wall seconds, peak RSS (MiB, from ``wait4``: this child's own) and JSON stdout."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = subprocess.Popen(command, stdout=out, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if process.returncode:
        raise SystemExit(f"{' '.join(command[:5])} failed: {stderr.decode()[-2000:]}")
    text = stdout.strip()
    return {"seconds": round(seconds, 2), "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
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
    kmeans = faiss.Kmeans(points.shape[1], k, niter=niter, nredo=1, seed=0, verbose=False)
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
        # what a process holds before it touches any feature: python, torch, faiss, h5py
        results["baseline_rss_mib"] = run_measured([sys.executable, "-c", BASELINE])["peak_rss_mib"]

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
                          "peak_rss_vs_matrix": round(knn["peak_rss_mib"]
                                                      / results["matrix_mib"], 2)}  # fmt: skip

        clusters = folder / "clusters.h5"
        cluster = run_measured([*sslkit, "cluster", "--features", str(big), "--k", str(args.k),
                                "--niter", str(args.niter), "--nredo", "1", "--out",
                                str(clusters), "--json", "-"])  # fmt: skip
        reference = reference_kmeans_seconds(train, args.k, args.niter)
        results["cluster"] = {"seconds": cluster["seconds"],
                              "peak_rss_mib": cluster["peak_rss_mib"],
                              "reference_faiss_seconds": round(reference, 2),
                              "time_vs_reference": round(cluster["seconds"] / reference, 2),
                              "peak_rss_vs_matrix": round(cluster["peak_rss_mib"]
                                                          / results["matrix_mib"], 2)}  # fmt: skip
        del train, test
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
