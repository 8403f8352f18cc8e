"""Pre-training throughput: sslkit's engine + MoCo plugin vs a bare hand-written torch loop.

    python bench/bench_pretrain.py [--data fashion-mnist@5120] [--arch resnet18]
        [--batch-size 256] [--repeats 2] [--device cpu|cuda] [--synthetic N --image-size S]

Same model (backbone + MoCo v2 MLP head, channels_last), batch, data and batched
augmentation in both; on CUDA both use mixed precision (float16 autocast and a grad
scaler), as the engine does. The bare loop has no plugin API, config, logging or
checkpointing. ``--synthetic N`` trains on N random uint8 images of ``--image-size`` held in
memory (no files, no download: what ``bench/gpu_check.sh`` uses for ResNet-50 at 224 px).
Runs alternate (bare, engine, bare, engine, ...) and the best of each is kept.
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from unittest import mock

import numpy as np
import torch
import torch.nn.functional as F

from sslkit import config as cfg
from sslkit.data.base import DataInfo, ImageDataset, InMemoryDataset
from sslkit.data.loader import training_batches
from sslkit.data.specs import load_split
from sslkit.data.views import make_views, view_spec_from_config
from sslkit.engine.trainer import Trainer
from sslkit.methods.moco import MoCo
from sslkit.models.backbones import build_backbone


def synthetic_dataset(count: int, size: int) -> ImageDataset:
    """``count`` random RGB uint8 images of ``size`` px with random labels, in memory."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (count, 3, size, size), dtype=torch.uint8, generator=generator)
    info = DataInfo("synthetic", 10, size, 3, (0.5,) * 3, (0.5,) * 3)
    labels = np.arange(count) % 10
    return InMemoryDataset(images, labels, info, f"synthetic@{count}", "train", "synthetic")


def bare_loop(dataset: ImageDataset, args: argparse.Namespace) -> float:
    """Images/s of one epoch of MoCo v2 written directly in torch."""
    device = torch.device(args.device)
    torch.manual_seed(0)
    backbone = build_backbone(args.arch)
    width = backbone.feature_dim
    online = torch.nn.Sequential(backbone, torch.nn.Linear(width, width), torch.nn.ReLU(),
                                 torch.nn.Linear(width, 128))  # fmt: skip
    online = online.to(device, memory_format=torch.channels_last)
    target = copy.deepcopy(online).requires_grad_(False)
    queue = F.normalize(torch.randn(args.queue_size, 128, device=device), dim=1)
    pointer = 0
    optimizer = torch.optim.SGD(online.parameters(), lr=0.06, momentum=0.9, weight_decay=5e-4)
    amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda") if amp else None
    autocast = torch.autocast("cuda", dtype=torch.float16) if amp else nullcontext()
    view_spec = view_spec_from_config(_augment(), dataset.info, count=2)
    generator = torch.Generator(device=device).manual_seed(0)
    batches = training_batches(len(dataset), args.batch_size, 0, 0, 0, 1)
    _synchronize(device)
    started = time.perf_counter()
    for batch in batches:
        images = dataset.images[torch.as_tensor(batch)].to(device, non_blocking=True)
        first, second = (v.contiguous(memory_format=torch.channels_last)
                         for v in make_views(images, view_spec, generator))  # fmt: skip
        with torch.no_grad():
            for p_t, p_o in zip(target.parameters(), online.parameters(), strict=True):
                p_t.mul_(0.99).add_(p_o.detach(), alpha=0.01)
        negatives = queue.clone()
        with autocast:
            query = F.normalize(online(first), dim=1)
            with torch.no_grad():
                key = F.normalize(target(second), dim=1)
            logits = torch.cat([(query * key).sum(1, keepdim=True), query @ negatives.t()],
                               1) / 0.2  # fmt: skip
            targets = torch.zeros(len(batch), dtype=torch.long, device=device)
            loss = F.cross_entropy(logits.float(), targets)
        queue[(torch.arange(len(batch), device=device) + pointer) % args.queue_size] = key.float()
        pointer = (pointer + len(batch)) % args.queue_size
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
    _synchronize(device)
    return len(batches) * args.batch_size / (time.perf_counter() - started)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _augment() -> dict:
    return cfg.deep_merge(MoCo.default_augment, {"crop_scale": [0.3, 1.0], "blur_prob": 0.0,
                                                  "grayscale_prob": 0.0,
                                                  "jitter": [0.4, 0.4, 0.0, 0.0]})  # fmt: skip


def engine_loop(dataset: ImageDataset, args: argparse.Namespace) -> float:
    """Images/s of one epoch of the same training through ``sslkit pretrain``'s engine."""
    config = cfg.resolve(MoCo, {
        "data": {"spec": dataset.spec}, "model": {"arch": args.arch},
        "method": {"queue_size": args.queue_size, "momentum": 0.99},
        "augment": _augment(),
        "train": {"epochs": 1, "batch_size": args.batch_size, "lr": 0.06, "weight_decay": 5e-4,
                  "device": args.device, "log_every": 10, "plot_curves": False},
    })  # fmt: skip
    with tempfile.TemporaryDirectory() as workdir, \
            mock.patch("sslkit.engine.trainer.load_split", lambda *a, **k: dataset):  # fmt: skip
        summary = Trainer(config, Path(workdir), show_progress=False).fit()
    return summary["images_per_second"]  # timed from the first step to the saved checkpoint


def main() -> None:
    """Alternate bare and engine runs; print the best images/s of each and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default="fashion-mnist@5120")
    parser.add_argument("--synthetic", type=int, default=0,
                        help="train on N random in-memory images instead of --data")
    parser.add_argument("--image-size", type=int, default=224, help="side of --synthetic images")
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--queue-size", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    dataset = (synthetic_dataset(args.synthetic, args.image_size) if args.synthetic
               else load_split(args.data, "train"))  # fmt: skip
    bare, engine = [], []
    for _ in range(args.repeats):
        bare.append(bare_loop(dataset, args))
        engine.append(engine_loop(dataset, args))
    result = {
        "data": dataset.spec, "batch_size": args.batch_size, "arch": args.arch,
        "device": args.device, "image_size": dataset.info.image_size,
        "bare_images_per_second": [round(x, 1) for x in bare],
        "engine_images_per_second": [round(x, 1) for x in engine],
        "ratio_engine_vs_bare": round(max(engine) / max(bare), 3),
        "threads": torch.get_num_threads(),
    }  # fmt: skip
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
