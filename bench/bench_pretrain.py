"""Pre-training throughput: sslkit's engine + MoCo plugin vs a bare hand-written torch loop.

    python bench/bench_pretrain.py [--data fashion-mnist@5120] [--batch-size 256] [--repeats 2]

Same model (ResNet-18 + MoCo v2 MLP head, channels_last), batch, data and batched
augmentation in both; the bare loop has no plugin API, config, logging or checkpointing.
Runs alternate (bare, engine, bare, engine, ...) and the best of each is kept.
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from sslkit import config as cfg
from sslkit.data.loader import training_batches
from sslkit.data.specs import load_split
from sslkit.data.views import make_views, view_spec_from_config
from sslkit.engine.trainer import Trainer
from sslkit.methods.moco import MoCo
from sslkit.models.backbones import build_backbone


def bare_loop(spec: str, batch_size: int, queue_size: int) -> float:
    """Images/s of one epoch of MoCo v2 written directly in torch."""
    torch.manual_seed(0)
    dataset = load_split(spec, "train")
    backbone = build_backbone("resnet18")
    width = backbone.feature_dim
    online = torch.nn.Sequential(backbone, torch.nn.Linear(width, width), torch.nn.ReLU(),
                                 torch.nn.Linear(width, 128))  # fmt: skip
    online = online.to(memory_format=torch.channels_last)
    target = copy.deepcopy(online).requires_grad_(False)
    queue = F.normalize(torch.randn(queue_size, 128), dim=1)
    pointer = 0
    optimizer = torch.optim.SGD(online.parameters(), lr=0.06, momentum=0.9, weight_decay=5e-4)
    view_spec = view_spec_from_config(_augment(), dataset.info, count=2)
    generator = torch.Generator().manual_seed(0)
    batches = training_batches(len(dataset), batch_size, 0, 0, 0, 1)
    started = time.perf_counter()
    for batch in batches:
        images = dataset.images[torch.as_tensor(batch)]
        first, second = (v.contiguous(memory_format=torch.channels_last)
                         for v in make_views(images, view_spec, generator))  # fmt: skip
        with torch.no_grad():
            for p_t, p_o in zip(target.parameters(), online.parameters(), strict=True):
                p_t.mul_(0.99).add_(p_o.detach(), alpha=0.01)
        negatives = queue.clone()
        query = F.normalize(online(first), dim=1)
        with torch.no_grad():
            key = F.normalize(target(second), dim=1)
        logits = torch.cat([(query * key).sum(1, keepdim=True), query @ negatives.t()], 1) / 0.2
        loss = F.cross_entropy(logits, torch.zeros(len(batch), dtype=torch.long))
        queue[(torch.arange(len(batch)) + pointer) % queue_size] = key
        pointer = (pointer + len(batch)) % queue_size
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return len(batches) * batch_size / (time.perf_counter() - started)


def _augment() -> dict:
    return cfg.deep_merge(MoCo.default_augment, {"crop_scale": [0.3, 1.0], "blur_prob": 0.0,
                                                  "grayscale_prob": 0.0,
                                                  "jitter": [0.4, 0.4, 0.0, 0.0]})  # fmt: skip


def engine_loop(spec: str, batch_size: int, queue_size: int) -> float:
    """Images/s of one epoch of the same training through ``sslkit pretrain``'s engine."""
    config = cfg.resolve(MoCo, {
        "data": {"spec": spec}, "model": {"arch": "resnet18"},
        "method": {"queue_size": queue_size, "momentum": 0.99},
        "augment": _augment(),
        "train": {"epochs": 1, "batch_size": batch_size, "lr": 0.06, "weight_decay": 5e-4,
                  "device": "cpu", "log_every": 10},
    })  # fmt: skip
    with tempfile.TemporaryDirectory() as workdir:
        summary = Trainer(config, Path(workdir), show_progress=False).fit()
    return summary["images_per_second"]  # timed from the first step to the saved checkpoint


def main() -> None:
    """Alternate bare and engine runs; print the best images/s of each and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default="fashion-mnist@5120")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--queue-size", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    bare, engine = [], []
    for _ in range(args.repeats):
        bare.append(bare_loop(args.data, args.batch_size, args.queue_size))
        engine.append(engine_loop(args.data, args.batch_size, args.queue_size))
    result = {
        "data": args.data, "batch_size": args.batch_size, "arch": "resnet18",
        "bare_images_per_second": [round(x, 1) for x in bare],
        "engine_images_per_second": [round(x, 1) for x in engine],
        "ratio_engine_vs_bare": round(max(engine) / max(bare), 3),
        "threads": torch.get_num_threads(),
    }  # fmt: skip
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
