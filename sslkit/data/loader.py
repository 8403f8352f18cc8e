"""Batches of uint8 images for training and extraction, sharded across processes."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from sslkit.data.base import ImageDataset
from sslkit.errors import BadInput


def epoch_order(size: int, seed: int, epoch: int) -> np.ndarray:
    """The sample order of one epoch: a permutation of ``range(size)`` seeded by
    ``(seed, epoch)`` (a checkpoint written inside the epoch stores it)."""
    return np.random.default_rng([seed, epoch]).permutation(size)


def training_batches(
    size: int, batch_per_rank: int, seed: int, epoch: int, rank: int, world_size: int,
    order: np.ndarray | None = None,
) -> list[np.ndarray]:
    """This rank's batches of one epoch: a seeded permutation, equal-size batches.

    The permutation depends only on ``(seed, epoch)`` (or is ``order``, the one a checkpoint
    saved), so a resumed run sees the same order; every rank gets the same number of full
    batches (the remainder is dropped).
    """
    order = epoch_order(size, seed, epoch) if order is None else np.asarray(order)
    if len(order) != size:
        raise BadInput(f"the checkpoint's epoch order covers {len(order)} images but the "
                       f"dataset has {size}: resume on the data the run was started with")
    per_step = batch_per_rank * world_size
    steps = size // per_step
    if steps == 0:
        raise BadInput(
            f"batch size {per_step} is larger than the dataset ({size} images): "
            "lower --batch-size"
        )
    order = order[: steps * per_step].reshape(steps, world_size, batch_per_rank)
    return [order[s, rank] for s in range(steps)]


def extraction_bounds(size: int, world_size: int) -> np.ndarray:
    """Rank r extracts rows ``bounds[r]:bounds[r + 1]`` of ``range(size)``."""
    return np.linspace(0, size, world_size + 1).astype(np.int64)


def extraction_batches(size: int, batch: int, rank: int, world_size: int) -> list[np.ndarray]:
    """This rank's contiguous share of ``range(size)`` in batches (no padding, no repeats)."""
    bounds = extraction_bounds(size, world_size)
    mine = np.arange(bounds[rank], bounds[rank + 1])
    return [mine[i : i + batch] for i in range(0, len(mine), batch)]


class _CheckedDataset(torch.utils.data.Dataset):
    """Wraps a file-backed dataset so a bad image becomes a message, not a worker crash."""

    def __init__(self, dataset: ImageDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        try:
            return self.dataset.load(index), index, None
        except BadInput as exc:
            return None, index, str(exc)


def _collate(items):
    problems = [message for _, _, message in items if message]
    if problems:
        return None, None, problems
    images = torch.stack([image for image, _, _ in items])
    return images, torch.tensor([index for _, index, _ in items]), None


def iterate_images(
    dataset: ImageDataset, batches: Sequence[np.ndarray], num_workers: int = 0
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(uint8 images, int64 dataset indices)`` for each batch of indices.

    In-memory datasets are indexed directly; file datasets are decoded by a DataLoader
    with ``num_workers`` workers. A bad image stops with a one-line error naming it.
    """
    if dataset.images is not None:
        for batch in batches:
            index = torch.as_tensor(batch, dtype=torch.long)
            yield dataset.images[index], index
        return
    loader = torch.utils.data.DataLoader(
        _CheckedDataset(dataset),
        batch_sampler=[list(map(int, b)) for b in batches],
        num_workers=num_workers,
        collate_fn=_collate,
        persistent_workers=False,
        # its own generator: creating the iterator must not draw from the global RNG (a
        # run resumed inside an epoch creates it at another point than an unbroken one)
        generator=torch.Generator().manual_seed(0),
    )
    for images, index, problems in loader:
        if problems:
            raise BadInput(problems[0])
        yield images, index
