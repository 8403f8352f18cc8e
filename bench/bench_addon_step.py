"""What PCL's prototype term and the CLD add-on cost on top of a MoCo v2 training step.

    python bench/bench_addon_step.py [--batch-size 64] [--steps 20] [--rounds 3]

ResNet-18, 32x32 images, SGD step included, steps of all methods interleaved one by one
on the same batches (so the shared machine's drift cancels out of the ratios):

* ``moco``: MoCo v2 (two views: query, key);
* ``pcl``: PCL after clustering (InfoNCE + three prototype terms), at small sizes (queue
  4096, k 250/500/1000, r 64) and at the paper's (queue 16384, k 25k/50k/100k, r 16384);
  its clustering is random (only its shape matters);
* ``moco-2q``: MoCo with two query views against one key (CLD's base, three views);
* ``moco+cld``: the same plus the CLD term (120 groups, local batch) — the add-on's own
  cost is ``moco+cld / moco-2q``.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
import torch.nn.functional as F
from benchlib import random_batches, training_step_seconds

from sslkit.data.base import DataInfo
from sslkit.distributed import DistEnv
from sslkit.methods.base import Batch, StepContext
from sslkit.methods.moco import MoCo
from sslkit.methods.pcl import PCL
from sslkit.methods.prototypical import Prototypes
from sslkit.methods.registry import get_method
from sslkit.models.backbones import build_backbone

INFO = DataInfo("bench", 10, 32, 3, (0.5,) * 3, (0.5,) * 3, num_samples=200_000)


def random_clustering(sizes: list[int], dim: int = 128) -> list[Prototypes]:
    """Unit centroids, mean-0.2 concentrations and random assignments of every size."""
    gen = torch.Generator().manual_seed(0)
    return [Prototypes(F.normalize(torch.randn(k, dim, generator=gen), dim=1),
                       0.2 * (torch.rand(k, generator=gen) + 0.5),
                       torch.randint(0, k, (INFO.num_samples,), generator=gen))
            for k in sizes]  # fmt: skip


def build(kind: str, queue: int, sizes: list[int], negatives: int):
    """A method of ``kind`` and its SGD optimiser."""
    torch.manual_seed(0)
    if kind == "pcl":
        config = PCL.Config(queue_size=queue, num_clusters=sizes,
                            num_negative_prototypes=negatives, warmup_epochs=0)  # fmt: skip
        method = PCL(config, build_backbone("resnet18"), INFO)
        method.set_clustering(random_clustering(sizes))
    elif kind == "moco+cld":
        cls = get_method("moco+cld")
        method = cls(cls.Config(queue_size=queue, queries=2), build_backbone("resnet18"), INFO)
    else:
        queries = 2 if kind == "moco-2q" else 1
        method = MoCo(MoCo.Config(queue_size=queue, queries=queries), build_backbone("resnet18"),
                      INFO)  # fmt: skip
    method.train().to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=0.03,
                                momentum=0.9, weight_decay=1e-4)  # fmt: skip
    return method, optimizer


def timed(methods: dict, batches: list[Batch], rounds: int, generator) -> dict[str, float]:
    """Median seconds per step of every method, steps interleaved (order rotating)."""
    context = StepContext(0, 0, 1, len(batches), 1.0, DistEnv(0, 1, 0, torch.device("cpu")),
                          generator)  # fmt: skip
    names = list(methods)
    seconds = {name: [] for name in names}
    for round_ in range(rounds + 1):  # round 0 warms up
        for step, batch in enumerate(batches):
            shift = step % len(names)
            for name in names[shift:] + names[:shift]:
                method, optimizer = methods[name]
                views = batch.views if name in ("moco+cld", "moco-2q") else batch.views[:2]
                step_batch = Batch(views, batch.indices)
                spent = training_step_seconds(method, optimizer, step_batch, context)
                if round_:
                    seconds[name].append(spent)
    return {name: float(np.median(values)) for name, values in seconds.items()}


def main() -> None:
    """Print seconds per step and the ratios to MoCo."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    generator = torch.Generator().manual_seed(0)
    batches = random_batches(args.steps, args.batch_size, 3, INFO.num_samples, generator)
    results = []
    for queue, sizes, negatives in ((4096, [250, 500, 1000], 64),
                                    (16384, [25000, 50000, 100000], 16384)):  # fmt: skip
        methods = {kind: build(kind, queue, sizes, negatives)
                   for kind in ("moco", "pcl", "moco-2q", "moco+cld")}  # fmt: skip
        median = timed(methods, batches, args.rounds, generator)
        results.append({
            "queue": queue, "pcl_clusters": sizes, "pcl_negatives": negatives,
            "batch_size": args.batch_size, "steps": args.steps * args.rounds,
            "seconds_per_step": {k: round(v, 4) for k, v in median.items()},
            "ratio_pcl_vs_moco": round(median["pcl"] / median["moco"], 3),
            "ratio_moco2q_vs_moco": round(median["moco-2q"] / median["moco"], 3),
            "ratio_cld_vs_moco2q": round(median["moco+cld"] / median["moco-2q"], 3),
        })  # fmt: skip
    print(json.dumps({"threads": torch.get_num_threads(), "results": results}, indent=2))


if __name__ == "__main__":
    main()
