"""The cost HCSC adds to a MoCo v2 training step, at small and at the paper's sizes.

    python bench/bench_hcsc_step.py [--batch-size 64] [--steps 20]

ResNet-18, 32x32 images, single crop, SGD step included. For each setting (queue 4096 with
100-50-20 prototypes; the paper's queue 16384 with 3000-2000-1000 prototypes) the script
times sslkit's MoCo v2 step and sslkit's HCSC step (after clustering: instance and
prototype selection on) on the same batches, interleaved step by step, and prints the
ratio of the median step times.
The clustering is made once from 50,000 random unit embeddings; only its shape matters.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from benchlib import random_batches, training_step_seconds

from sslkit.clustering.kmeans import KMeansSettings, hierarchical_kmeans
from sslkit.data.base import DataInfo
from sslkit.distributed import DistEnv
from sslkit.methods.base import Batch, StepContext
from sslkit.methods.hcsc import HCSC, Prototypes, _with_parent_tables
from sslkit.methods.moco import MoCo
from sslkit.models.backbones import build_backbone

INFO = DataInfo("bench", 10, 32, 3, (0.5,) * 3, (0.5,) * 3, num_samples=50_000)


def clustering(sizes: list[int], dim: int = 128) -> list[Prototypes]:
    """Hierarchical prototypes of 50,000 random unit vectors (nredo 1)."""
    rng = np.random.default_rng(0)
    points = rng.normal(size=(INFO.num_samples, dim)).astype(np.float32)
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    result = hierarchical_kmeans(points, sizes, 0.2, KMeansSettings(niter=10, nredo=1))
    return _with_parent_tables([Prototypes(
        torch.from_numpy(level.centroids), torch.from_numpy(level.density),
        torch.from_numpy(level.assignments),
        None if level.parents is None else torch.from_numpy(level.parents), None,
    ) for level in result.levels])  # fmt: skip


def make(method_cls, queue: int, sizes: list[int]):
    """A method, its optimiser and its prototypes (HCSC only)."""
    torch.manual_seed(0)
    if method_cls is HCSC:
        config = HCSC.Config(queue_size=queue, num_clusters=sizes, warmup_epochs=0)
    else:
        config = MoCo.Config(queue_size=queue)
    method = method_cls(config, build_backbone("resnet18"), INFO).train()
    method.to(memory_format=torch.channels_last)
    if method_cls is HCSC:
        method.prototypes = clustering(sizes)
        method._refresh_selection_cache()
    optimizer = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=0.03,
                                momentum=0.9, weight_decay=1e-4)  # fmt: skip
    return method, optimizer


def paired_steps(moco, moco_opt, hcsc, hcsc_opt, batches: list[Batch], generator):
    """Per-step seconds of MoCo and HCSC, interleaved step by step (order alternating).

    Interleaving single steps pairs every HCSC step with a MoCo step run under the same
    machine load, so the shared machine's drift cancels out of the ratio of medians.
    """
    context = StepContext(0, 0, 1, len(batches), 1.0, DistEnv(0, 1, 0, torch.device("cpu")),
                          generator)  # fmt: skip
    moco_s, hcsc_s = [], []
    for step, batch in enumerate(batches):
        if step % 2:
            hcsc_s.append(training_step_seconds(hcsc, hcsc_opt, batch, context))
            moco_s.append(training_step_seconds(moco, moco_opt, batch, context))
        else:
            moco_s.append(training_step_seconds(moco, moco_opt, batch, context))
            hcsc_s.append(training_step_seconds(hcsc, hcsc_opt, batch, context))
    return moco_s, hcsc_s


def main() -> None:
    """Print seconds per step for MoCo and HCSC and the ratio, per setting."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    generator = torch.Generator().manual_seed(0)
    batches = random_batches(args.steps, args.batch_size, 2, INFO.num_samples, generator)
    results = []
    for queue, sizes in ((4096, [100, 50, 20]), (16384, [3000, 2000, 1000])):
        moco, moco_opt = make(MoCo, queue, sizes)
        hcsc, hcsc_opt = make(HCSC, queue, sizes)
        paired_steps(moco, moco_opt, hcsc, hcsc_opt, batches[:3], generator)  # warm-up
        moco_s, hcsc_s = [], []
        for _ in range(args.rounds):
            moco_round, hcsc_round = paired_steps(moco, moco_opt, hcsc, hcsc_opt, batches,
                                                  generator)  # fmt: skip
            moco_s += moco_round
            hcsc_s += hcsc_round
        moco_median, hcsc_median = float(np.median(moco_s)), float(np.median(hcsc_s))
        results.append({
            "queue": queue, "prototypes": sizes, "batch_size": args.batch_size,
            "steps": len(moco_s),
            "moco_seconds_per_step": round(moco_median, 4),
            "hcsc_seconds_per_step": round(hcsc_median, 4),
            "ratio_hcsc_vs_moco": round(hcsc_median / moco_median, 3),
            "ratio_of_paired_steps_median": round(float(np.median(
                np.array(hcsc_s) / np.array(moco_s))), 3),
        })  # fmt: skip
    print(json.dumps({"threads": torch.get_num_threads(), "results": results}, indent=2))


if __name__ == "__main__":
    main()
