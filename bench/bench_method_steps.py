"""One training step of every non-contrastive, classification and multi-crop method vs MoCo v2.

    python bench/bench_method_steps.py [--batch-size 64] [--steps 10] [--rounds 3]

Same backbone (ResNet-18), same 32x32 global views (and 16x16 local crops for the
multi-crop methods), one full step each: the method's inner updates, forward, backward,
SGD step and its after-step work. Steps of all methods are interleaved one by one on the
same batches so the shared machine's drift cancels out of the ratios to ``moco``:

* ``moco`` (2 views), ``simsiam``, ``byol`` (2 views, ImageNet heads: 2048 / 4096 wide);
* ``conic`` (full classifier over N = 200,000 images) and ``conic-sampled`` (pool 65,536);
* ``moco-multicrop`` (2 global + 2 local crops: LoGo "w/o L2L"), ``moco+logo`` (the
  three-step update), ``simsiam+logo`` (joint mode).
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from benchlib import random_batches

from sslkit.data.base import DataInfo
from sslkit.distributed import DistEnv
from sslkit.methods.base import Batch, StepContext
from sslkit.methods.registry import get_method
from sslkit.models.backbones import build_backbone

INFO = DataInfo("bench", 10, 32, 3, (0.5,) * 3, (0.5,) * 3, num_samples=200_000)
LOCALS = [[0.5, [0.08, 0.6]], [0.5, [0.08, 0.6]]]
KINDS = {
    "moco": ("moco", {"queue_size": 4096}),
    "simsiam": ("simsiam", {}),
    "byol": ("byol", {}),
    "conic": ("conic", {}),
    "conic-sampled": ("conic", {"classifier": "sampled", "pool_size": 65536}),
    "moco-multicrop": ("moco", {"queue_size": 4096, "multi_crop": True, "local_crops": LOCALS}),
    "moco+logo": ("moco+logo", {"queue_size": 4096, "local_crops": LOCALS}),
    "simsiam+logo": ("simsiam+logo", {"local_crops": LOCALS, "logo_mode": "joint"}),
}


def build(kind: str):
    """The method and an SGD optimiser over its groups (as the engine builds it)."""
    from sslkit.config import resolve
    from sslkit.engine.optim import build_optimizer

    name, values = KINDS[kind]
    cls = get_method(name)
    torch.manual_seed(0)
    method = cls(cls.Config(**values), build_backbone("resnet18"), INFO).train()
    method.to(memory_format=torch.channels_last)
    train = resolve(cls, {})["train"] | {"optimizer": "sgd"}
    return method, build_optimizer(method.param_groups(), train, 0.03)


def one_step(method, optimizer, batch: Batch, context: StepContext) -> float:
    """Seconds of one engine-shaped step."""
    import time

    started = time.perf_counter()
    method.inner_step(batch, context)
    loss = method(batch, context)["loss"]
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    method.after_optimizer_step(context)
    return time.perf_counter() - started


def main() -> None:
    """Print the median seconds per step and the ratios to MoCo."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    generator = torch.Generator().manual_seed(0)
    batches = random_batches(args.steps, args.batch_size, 2, INFO.num_samples, generator)
    local = [torch.randn(args.batch_size, 3, 16, 16, generator=generator)
             .contiguous(memory_format=torch.channels_last) for _ in range(2)]  # fmt: skip
    methods = {kind: build(kind) for kind in KINDS}
    context = StepContext(0, 0, 1, 1000, 1.0, DistEnv(0, 1, 0, torch.device("cpu")),
                          generator, lr=0.03)  # fmt: skip
    names = list(methods)
    seconds = {name: [] for name in names}
    for round_ in range(args.rounds + 1):  # round 0 warms up
        for step, batch in enumerate(batches):
            shift = step % len(names)
            for name in names[shift:] + names[:shift]:
                method, optimizer = methods[name]
                views = batch.views + local if method.local_views() else batch.views
                spent = one_step(method, optimizer, Batch(views, batch.indices), context)
                if round_:
                    seconds[name].append(spent)
    median = {name: float(np.median(values)) for name, values in seconds.items()}
    print(json.dumps({
        "threads": torch.get_num_threads(), "batch_size": args.batch_size,
        "steps": args.steps * args.rounds,
        "seconds_per_step": {k: round(v, 4) for k, v in median.items()},
        "ratio_vs_moco": {k: round(v / median["moco"], 3) for k, v in median.items()},
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
