"""Helpers shared by the benchmark scripts (run as ``python bench/<script>.py``)."""

from __future__ import annotations

import json
import subprocess
import time


def timed_run(command: list[str]) -> tuple[float, dict]:
    """Wall seconds and parsed JSON output (stdout) of one CLI subprocess."""
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return time.perf_counter() - started, json.loads(done.stdout)


def training_step_seconds(method, optimizer, batch, context) -> float:
    """Seconds of one training step of a method: forward, backward, optimiser step."""
    started = time.perf_counter()
    loss = method(batch, context)["loss"]
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return time.perf_counter() - started


def random_batches(steps: int, batch_size: int, views: int, num_samples: int, generator):
    """``steps`` batches of ``views`` random 32x32 channels-last views with random indices."""
    import torch

    from sslkit.methods.base import Batch

    batches = []
    for _ in range(steps):
        images = [torch.randn(batch_size, 3, 32, 32, generator=generator)
                  .contiguous(memory_format=torch.channels_last) for _ in range(views)]  # fmt: skip
        indices = torch.randint(0, num_samples, (batch_size,), generator=generator)
        batches.append(Batch(views=images, indices=indices))
    return batches
