"""FIFO queue of keys (MoCo): a ``K x dim`` buffer of unit vectors and a pointer."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class KeyQueue(nn.Module):
    """A FIFO of ``size`` L2-normalised ``dim``-d keys, stored as rows, checkpointed.

    Rows start as random unit vectors. ``push(keys)`` overwrites the oldest rows,
    wrapping around the end, and advances the pointer; optional ``ids`` (dataset
    indices) are stored beside the keys. Reading ``keys`` gives a detached tensor.
    """

    def __init__(self, size: int, dim: int, generator: torch.Generator | None = None) -> None:
        super().__init__()
        init = F.normalize(torch.randn(size, dim, generator=generator), dim=1)
        self.register_buffer("buffer", init)
        self.register_buffer("ids", torch.full((size,), -1, dtype=torch.long))
        self.register_buffer("pointer", torch.zeros((), dtype=torch.long))

    @property
    def size(self) -> int:
        """Number of keys the queue holds."""
        return self.buffer.shape[0]

    @property
    def keys(self) -> torch.Tensor:
        """The queue contents (``size x dim``), detached."""
        return self.buffer.detach()

    @torch.no_grad()
    def push(self, keys: torch.Tensor, ids: torch.Tensor | None = None) -> torch.Tensor:
        """Write ``keys`` (``B x dim``) at the pointer, wrapping around; advance the pointer.

        Returns the rows written (so a method can keep per-entry caches beside the queue).
        """
        count = keys.shape[0]
        if count > self.size:
            keys, count = keys[-self.size :], self.size
            ids = ids[-self.size :] if ids is not None else None
        start = int(self.pointer)
        positions = (torch.arange(count, device=keys.device) + start) % self.size
        self.buffer[positions] = keys.to(self.buffer.dtype)
        self.ids[positions] = ids.to(self.ids.device) if ids is not None else -1
        self.pointer.fill_((start + count) % self.size)
        return positions
