"""Memory bank of per-image embeddings (NPID, Wu et al. 2018): an ``N x D`` buffer.

Row ``i`` is a running average of image ``i``'s past embeddings, used as the "classifier
weight" of instance ``i``. (As in the authors' lemniscate.pytorch code.)

* Initialisation (lemniscate ``NCEAverage``/``LinearAverage``): i.i.d. uniform in
  ``[−s, s]`` with ``s = 1/√(D/3)``; rows are not normalised, their norm is ≈ 1.
* Update of the batch's rows: ``v_i ← normalize(m·v_i + (1−m)·f_i)`` (proximal/momentum
  update, m = 0.5 in NPID), after the optimiser step, with the detached embeddings.
* Distributed: :meth:`MemoryBank.update` all-gathers the indices and embeddings of the
  whole global batch first, so every rank applies the same update and the banks stay
  identical.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from sslkit.distributed import all_gather_concat
from sslkit.errors import BadInput


def uniform_init_bound(dim: int) -> float:
    """``s = 1/√(dim/3)``: uniform rows in ``[−s, s]^dim`` have expected squared norm 1."""
    return 1.0 / math.sqrt(dim / 3)


class MemoryBank(nn.Module):
    """``size x dim`` embeddings of every training image, a checkpointed buffer.

    ``size=0`` builds an *unsized* bank, to be filled by ``load_state_dict`` (a method
    rebuilt from a checkpoint only to embed images does not know the training-set size);
    it adopts the stored bank's shape. A sized bank refuses a stored bank of another shape.
    """

    def __init__(self, size: int, dim: int, momentum: float = 0.5,
                 generator: torch.Generator | None = None) -> None:  # fmt: skip
        super().__init__()
        if not 0.0 <= momentum <= 1.0:
            raise BadInput(f"memory-bank momentum must be in [0, 1], got {momentum}")
        self.momentum = momentum
        bound = uniform_init_bound(dim)
        init = torch.rand(size, dim, generator=generator).mul_(2 * bound).sub_(bound)
        self.register_buffer("bank", init)

    @property
    def size(self) -> int:
        """Number of rows N (0 for an unsized bank)."""
        return self.bank.shape[0]

    @property
    def dim(self) -> int:
        """Embedding dimension D."""
        return self.bank.shape[1]

    @property
    def vectors(self) -> torch.Tensor:
        """The whole bank (``N x D``), detached."""
        return self.bank.detach()

    def rows(self, indices: torch.Tensor) -> torch.Tensor:
        """Rows ``indices`` (any shape ``S``) as a detached ``S x D`` tensor."""
        flat = self.bank.detach().index_select(0, indices.reshape(-1))
        return flat.view(*indices.shape, self.dim)

    def sample(self, count: int, per_row: int,
               generator: torch.Generator | None = None) -> torch.Tensor:  # fmt: skip
        """``count x per_row`` row ids drawn uniformly **with replacement** from 0..N−1.

        NPID's NCE noise (lemniscate's ``AliasMethod`` over uniform probabilities): a draw
        may equal the positive's own index; nothing prevents that.
        """
        device = generator.device if generator is not None else self.bank.device
        ids = torch.randint(0, self.size, (count, per_row), generator=generator, device=device)
        return ids.to(self.bank.device)

    def sample_with_positive(self, indices: torch.Tensor, negatives: int,
                             generator: torch.Generator | None = None) -> torch.Tensor:  # fmt: skip
        """``b x (1 + K)`` row ids: each sample's own index in column 0, then K noise draws."""
        noise = self.sample(indices.shape[0], negatives, generator)
        return torch.cat([indices.view(-1, 1).to(noise.device), noise], dim=1)

    @torch.no_grad()
    def update_local(self, indices: torch.Tensor, features: torch.Tensor) -> None:
        """``v_i ← normalize(m·v_i + (1−m)·f_i)`` for this process's rows only (no gather).

        A repeated index is updated once, from its **last** occurrence, so the result does
        not depend on the order a device happens to write duplicates in.
        """
        indices, features = _last_occurrence(indices.to(self.bank.device), features)
        old = self.bank.index_select(0, indices)
        new = old.mul_(self.momentum).add_(features.to(old.dtype), alpha=1.0 - self.momentum)
        self.bank.index_copy_(0, indices, F.normalize(new, dim=1))

    @torch.no_grad()
    def update(self, indices: torch.Tensor, features: torch.Tensor) -> None:
        """All-gather the global batch's (indices, features), then :meth:`update_local`.

        Every rank applies the same update, so the banks stay identical;
        in a single process the gather is the identity.
        """
        features = features.detach()
        self.update_local(all_gather_concat(indices), all_gather_concat(features))

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs) -> None:  # fmt: skip
        stored = state_dict.get(prefix + "bank")
        if stored is not None and stored.shape != self.bank.shape:
            if self.size != 0 or stored.ndim != 2 or stored.shape[1] != self.dim:
                raise BadInput(
                    f"the checkpoint's memory bank is {tuple(stored.shape)} but this model's "
                    f"is {tuple(self.bank.shape)}: resume on the same training set "
                    "(same data spec and subset) and the same embedding dimension"
                )
            self.bank = torch.empty_like(stored, device=self.bank.device, dtype=self.bank.dtype)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)  # fmt: skip


def _last_occurrence(indices: torch.Tensor,
                     features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Unique ``indices`` with the feature row of each one's last occurrence."""
    unique, inverse = torch.unique(indices, return_inverse=True)
    if unique.numel() == indices.numel():
        return indices, features
    positions = torch.arange(indices.numel(), device=indices.device)
    last = torch.full_like(unique, -1).scatter_reduce_(0, inverse, positions, reduce="amax")
    return unique, features.index_select(0, last)
