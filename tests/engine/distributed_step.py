"""One training step of MoCo or HCSC, single-process or under torchrun (a test helper).

``python tests/engine/distributed_step.py METHOD OUT [--shuffle-bn]`` run alone takes one
step on a global batch of B digits; run under ``torchrun --nproc-per-node 2`` each rank
takes its contiguous half (as ``training_batches`` deals them) inside
DistributedDataParallel, as the trainer does. The single process uses split BatchNorm
over 2 chunks, the batch interleaved so that chunk ``r`` is rank ``r``'s half: BatchNorm
then sees the same samples in both runs and the step must agree. Views are fixed (the
image and its mirror image), so no augmentation randomness enters. Rank 0 writes the
loss, the method's state after the step and, for HCSC, every rank's clustering to OUT.
"""

from __future__ import annotations

import argparse
import dataclasses

import torch

from sslkit import distributed
from sslkit.config import method_config
from sslkit.data.specs import load_split
from sslkit.features.extract import EvalTransform, embed_dataset
from sslkit.methods.base import Batch, EpochContext, StepContext
from sslkit.methods.registry import get_method
from sslkit.models.backbones import build_backbone

BATCH = 32
SETTINGS = {
    "moco": {"queue_size": 64},
    "hcsc": {"queue_size": 64, "num_clusters": [8, 4], "warmup_epochs": 0,
             "kmeans_nredo": 1, "instance_selection": False, "proto_selection": False},
}  # fmt: skip


def main() -> None:
    """Parse the arguments, take the step, write the results."""
    parser = argparse.ArgumentParser()
    parser.add_argument("method", choices=list(SETTINGS))
    parser.add_argument("out")
    parser.add_argument("--shuffle-bn", action="store_true")
    args = parser.parse_args()
    env = distributed.setup("cpu")
    try:
        torch.save(one_step(args.method, env, args.shuffle_bn), args.out + f".rank{env.rank}")
    finally:
        distributed.teardown()


def one_step(name: str, env: distributed.DistEnv, shuffle_bn: bool) -> dict:
    """The step's loss (mean over ranks) and the method's state afterwards."""
    torch.manual_seed(0)
    dataset = load_split(f"digits@{BATCH}", "train")
    info = dataclasses.replace(dataset.info, num_samples=len(dataset))
    method_cls = get_method(name)
    section = {**SETTINGS[name], "shuffle_bn": shuffle_bn,
               "bn_splits": 2 if env.world_size == 1 else 1}  # fmt: skip
    method = method_cls(method_config(method_cls, section), build_backbone("resnet18-small"), info)
    transform = EvalTransform(info.image_size, info.mean, info.std)
    generator = torch.Generator().manual_seed(1)
    model = method
    if env.distributed:
        model = torch.nn.parallel.DistributedDataParallel(method, broadcast_buffers=False)
    optimizer = torch.optim.SGD(method.parameters(), lr=0.5, momentum=0.9)
    method.train()

    def extract(network: torch.nn.Module) -> torch.Tensor:
        network.eval()
        try:
            return embed_dataset(network, dataset, transform, env.device, batch_size=7)
        finally:
            network.train()

    method.on_epoch_start(EpochContext(0, 1, env, generator, extract))
    order = torch.arange(BATCH)
    half = BATCH // 2
    if env.distributed:
        order = order[env.rank * half:(env.rank + 1) * half]
    else:  # chunk r of split BN (samples r, r + 2, ...) = rank r's half
        order = torch.stack([order[:half], order[half:]], dim=1).reshape(-1)
    images = transform(torch.stack([dataset.load(int(i)) for i in order]))
    batch = Batch(views=[images, images.flip(3)], indices=order)
    ctx = StepContext(0, 0, 1, 1, 1.0, env, generator)
    loss = model(batch, ctx)["loss"]
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    mean_loss = loss.detach().clone()
    if env.distributed:
        torch.distributed.all_reduce(mean_loss)
        mean_loss /= env.world_size
    state = {key: value.detach().clone() if isinstance(value, torch.Tensor) else value
             for key, value in method.state_dict().items()}  # fmt: skip
    return {"loss": float(mean_loss), "state": state}


if __name__ == "__main__":
    main()
