"""Where a CPU training step's time goes, and which speed levers pay (issue 17).

    python bench/bench_cpu_speed.py [--recipe moco/fashion-mnist] [--steps 40] [--compile]

For the recipe's method, backbone and batch on Fashion-MNIST, in one process:

* the machine's matmul roofline: GFLOP/s of a large float32 ``torch.mm``;
* the FLOPs of one training step (forward and backward of the online views, forward of
  the key views), counted by ``torch.utils.flop_counter``, and the GFLOP/s the step
  achieves, as a fraction of the roofline;
* images/s of the engine-shaped step (batched augmentation on uint8 batches, the method,
  SGD, after-step updates) against a bare eager torch loop of the same model and batch;
* the levers: channels_last vs contiguous, 1 vs all threads, the share of the step spent
  in augmentation (what overlapping data preparation could at most save), and with
  ``--compile`` ``torch.compile`` of the backbone: compile seconds against the steady gain.

Steps of the variants are interleaved in rounds so the shared machine's drift cancels out
of the ratios. Prints JSON.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import statistics
import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from sslkit import config as cfg
from sslkit.data.specs import load_split
from sslkit.data.views import make_views
from sslkit.distributed import DistEnv
from sslkit.engine.optim import build_optimizer
from sslkit.methods.base import Batch, StepContext
from sslkit.methods.registry import get_method
from sslkit.models.backbones import build_backbone


def matmul_roofline(size: int = 2048, repeats: int = 5) -> float:
    """Best GFLOP/s of a ``size``-square float32 ``torch.mm`` on this machine."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best / 1e9


class Setup:
    """The recipe's method, optimiser, view spec and data, ready to take steps."""

    def __init__(self, recipe: str, channels_last: bool = True) -> None:
        layer = cfg.load_yaml(recipe)
        name = layer["method"].get("name") if "name" in layer.get("method", {}) else None
        method_name = name or recipe.split("/")[0]
        self.cls = get_method(method_name)
        self.config = cfg.resolve(self.cls, layer, {"method": {"name": method_name}})
        self.dataset = load_split("fashion-mnist", "train")
        info = dataclasses.replace(self.dataset.info, num_samples=len(self.dataset))
        torch.manual_seed(0)
        backbone = build_backbone(self.config["model"]["arch"])
        self.method = self.cls(cfg.method_config(self.cls, self.config["method"]), backbone,
                               info).train()  # fmt: skip
        self.channels_last = channels_last
        if channels_last:
            self.method.to(memory_format=torch.channels_last)
        self.optimizer = build_optimizer(self.method.param_groups(), self.config["train"], 0.03)
        self.spec = self.method.views(self.config["augment"])
        self.batch_size = int(self.config["train"]["batch_size"])
        self.generator = torch.Generator().manual_seed(0)
        self.context = StepContext(0, 0, 1, 100, 1.0, DistEnv(0, 1, 0, torch.device("cpu")),
                                   self.generator)  # fmt: skip

    def batch(self) -> Batch:
        """A batch of augmented views of random training images (augmentation timed apart)."""
        index = torch.randint(0, len(self.dataset), (self.batch_size,), generator=self.generator)
        views = make_views(self.dataset.images[index], self.spec, self.generator)
        if self.channels_last:
            views = [v.contiguous(memory_format=torch.channels_last) for v in views]
        return Batch(views, index)

    def step(self, batch: Batch) -> None:
        """One engine-shaped step: inner step, forward, backward, SGD, after-step updates."""
        self.method.inner_step(batch, self.context)
        loss = self.method(batch, self.context)["loss"]
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.method.after_optimizer_step(self.context)


def step_flops(setup: Setup) -> int:
    """FLOPs of one training step (convolutions and matrix products, forward + backward)."""
    batch = setup.batch()
    with FlopCounterMode(display=False) as counter:
        loss = setup.method(batch, setup.context)["loss"]
        loss.backward()
    setup.optimizer.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


class BareMoCo:
    """The same backbone and head trained by a hand-written symmetric MoCo loop."""

    def __init__(self, setup: Setup) -> None:
        method = setup.method
        self.online = copy.deepcopy(method.online)
        self.target = copy.deepcopy(method.target).requires_grad_(False)
        self.queue = method.queue.keys.clone()
        self.temperature = float(method.config.temperature)
        self.symmetric = bool(method.config.symmetric)
        self.optimizer = torch.optim.SGD(self.online.parameters(), lr=0.03, momentum=0.9,
                                         weight_decay=5e-4)  # fmt: skip

    def _info_nce(self, query, key, negatives):
        positive = (query * key).sum(1, keepdim=True)
        logits = torch.cat([positive, query @ negatives.t()], 1) / self.temperature
        return F.cross_entropy(logits, torch.zeros(len(query), dtype=torch.long))

    def step(self, batch: Batch) -> None:
        """Momentum update, InfoNCE against the queue, SGD, enqueue."""
        first, second = batch.views[0], batch.views[1]
        with torch.no_grad():
            for p_t, p_o in zip(self.target.parameters(), self.online.parameters(), strict=True):
                p_t.mul_(0.99).add_(p_o.detach(), alpha=0.01)
            keys = [F.normalize(self.target(second), dim=1)]
            if self.symmetric:
                keys.append(F.normalize(self.target(first), dim=1))
        negatives = self.queue.clone()
        loss = self._info_nce(F.normalize(self.online(first), dim=1), keys[0], negatives)
        if self.symmetric:
            loss = loss + self._info_nce(F.normalize(self.online(second), dim=1), keys[1],
                                         negatives)  # fmt: skip
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        new = torch.cat(keys)
        self.queue = torch.cat([new, self.queue[: len(self.queue) - len(new)]])


def median_seconds(fn, batches: list[Batch]) -> float:
    """Median wall seconds of ``fn(batch)`` over the batches."""
    times = []
    for batch in batches:
        started = time.perf_counter()
        fn(batch)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    """Measure and print the figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--recipe", default="moco/fashion-mnist")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile")
    args = parser.parse_args()
    threads = torch.get_num_threads()
    roofline = matmul_roofline()
    setup = Setup(args.recipe)
    contiguous = Setup(args.recipe, channels_last=False)
    flops = step_flops(setup)
    bare = BareMoCo(setup) if setup.cls.name == "moco" else None
    variants = {"engine_step": setup.step, "contiguous_step": contiguous.step}
    if bare is not None:
        variants["bare_loop_step"] = bare.step
    compile_seconds = None
    if args.compile:
        compiled = Setup(args.recipe)
        compiled.method.online.backbone = torch.compile(compiled.method.online.backbone)
        started = time.perf_counter()
        compiled.step(compiled.batch())
        compiled.step(compiled.batch())
        compile_seconds = time.perf_counter() - started
        variants["compiled_step"] = compiled.step
    for fn in variants.values():  # warm-up
        fn(setup.batch())
    results: dict[str, list[float]] = {name: [] for name in variants}
    augment: list[float] = []
    one_thread: list[float] = []
    for _ in range(args.rounds):
        started = time.perf_counter()
        batches = [setup.batch() for _ in range(args.steps)]
        augment.append((time.perf_counter() - started) / args.steps)
        for name, fn in variants.items():
            results[name].append(median_seconds(fn, batches))
        torch.set_num_threads(1)
        one_thread.append(median_seconds(setup.step, batches[: args.steps // 2]))
        torch.set_num_threads(threads)
    step = min(results["engine_step"])
    images = setup.batch_size
    report = {
        "recipe": args.recipe, "arch": setup.config["model"]["arch"], "batch_size": images,
        "threads": threads,
        "matmul_roofline_gflops": round(roofline, 1),
        "step_gflop": round(flops / 1e9, 3),
        "engine": {"step_s": round(step, 4), "images_per_s": round(images / step, 1),
                   "gflops": round(flops / step / 1e9, 1),
                   "fraction_of_roofline": round(flops / step / 1e9 / roofline, 3)},
        "augmentation_s_per_batch": round(min(augment), 4),
        "augmentation_share_of_step": round(min(augment) / (min(augment) + step), 3),
        "channels_last_vs_contiguous": round(min(results["contiguous_step"]) / step, 3),
        "one_thread_images_per_s": round(images / min(one_thread), 1),
        "speedup_all_threads_vs_one": round(min(one_thread) / step, 3),
    }  # fmt: skip
    if bare is not None:
        report["engine_vs_bare_loop"] = round(min(results["bare_loop_step"]) / step, 3)
    if compile_seconds is not None:
        compiled_step = min(results["compiled_step"])
        saved_per_step = max(step - compiled_step, 1e-9)
        report["compile"] = {"first_two_steps_s": round(compile_seconds, 1),
                             "step_s": round(compiled_step, 4),
                             "speedup": round(step / compiled_step, 3),
                             "break_even_steps": round(compile_seconds / saved_per_step)}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
