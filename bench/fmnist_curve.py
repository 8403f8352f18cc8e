"""Learning curve of a run: kNN top-1 on the full Fashion-MNIST split vs training minutes.

    python bench/fmnist_curve.py WORKDIR [--data fashion-mnist] [--k 200]

WORKDIR is a `sslkit pretrain` run made with `--set train.keep_checkpoints=true`. The
script also scores the same architecture at its random initialisation (the run's seed)
and the raw pixels, the two references a learned encoder has to beat.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from sslkit.data.specs import load_split
from sslkit.data.views import to_float_rgb
from sslkit.eval.knn import knn_classify
from sslkit.features.extract import EvalTransform, embed_dataset
from sslkit.models.backbones import build_backbone
from sslkit.models.checkpoint import load_encoder


def knn_of(network, train, test, transform, k: int) -> float:
    """kNN top-1 (k neighbours, T=0.07) of a backbone's features."""
    network.eval()
    device = torch.device("cpu")
    bank = embed_dataset(network, train, transform, device)
    queries = embed_dataset(network, test, transform, device)
    return knn_classify(bank, train.labels, queries, test.labels, (k,), 0.07).top1[k]


def minutes_per_epoch(workdir: Path) -> dict[int, float]:
    """Minutes since the run started at the end of each epoch (from metrics.jsonl)."""
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    starts = [r["time"] for r in records if r["kind"] == "start"]
    start = starts[0] if starts else (workdir / "config.yaml").stat().st_mtime
    return {r["epoch"]: (r["time"] - start) / 60 for r in records if r["kind"] == "epoch"}


def main() -> None:
    """Print the curve as JSON lines and a summary."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--k", type=int, default=200)
    args = parser.parse_args()
    train, test = load_split(args.data, "train"), load_split(args.data, "test")
    checkpoints = sorted(args.workdir.glob("checkpoint_epoch*.pt"))
    first = load_encoder(checkpoints[0])
    config = first.checkpoint["config"]
    size = config["augment"].get("size") or train.info.image_size
    transform = EvalTransform(size, train.info.mean, train.info.std)
    pixels = knn_classify(to_float_rgb(train.images).flatten(1), train.labels,
                          to_float_rgb(test.images).flatten(1), test.labels,
                          (args.k,), 0.07).top1[args.k]  # fmt: skip
    torch.manual_seed(config["train"]["seed"])
    random_init = knn_of(build_backbone(first.arch), train, test, transform, args.k)
    print(json.dumps({"reference": "raw pixels", "knn_top1": round(pixels, 2)}))
    print(json.dumps({"reference": f"random init {first.arch}", "knn_top1": round(random_init, 2)}))
    minutes = minutes_per_epoch(args.workdir)
    curve = []
    for path in checkpoints:
        encoder = load_encoder(path)
        epoch = int(encoder.checkpoint["epoch"])
        top1 = knn_of(encoder.build_backbone(), train, test, transform, args.k)
        curve.append(top1)
        print(json.dumps({"epoch": epoch, "minutes": round(minutes.get(epoch, np.nan), 1),
                          "knn_top1": round(top1, 2),
                          "gain_vs_random_init": round(top1 - random_init, 2)}), flush=True)


if __name__ == "__main__":
    main()
