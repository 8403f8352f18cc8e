"""A sampled N-way classifier: a pool of weight rows on the device, the rest on the host.

ConIC with sampling (the paper's sampled denominator): of the N rows (and their SGD
momentum buffers) only ``P`` live in a device pool; every step the global batch's rows
are brought in, replacing the rows loaded earliest (FIFO; a row already in the pool is
refreshed instead), and only pool rows get gradients and updates. A row outside the pool
still "receives" its weight decay in every step it misses: with PyTorch's SGD
(``d = g + λu``, ``v <- μv + d``, ``u <- u - η_t v``) and ``g = 0`` a missed step is the
linear map

    [v; u] <- A_t [v; u],   A_t = [[μ, λ], [-η_t μ, 1 - η_t λ]]

so when a row is loaded again it is multiplied by the product of the maps of the steps
it missed (:class:`SkippedStepMaps`), which makes the pool *exactly* lazy eager SGD: the
same rows as updating all N rows every step with zero data gradient outside the pool.

The pool is ``pool_weight`` (a parameter: the loss's gradient reaches it) with its
momentum ``pool_velocity``; :meth:`SampledClassifier.sgd_step` applies the SGD itself
(the engine's optimiser keeps it at lr 0, only so AMP unscales its gradient), then
advances the skipped-step maps. The host store (``N x D`` rows, momenta and the step at
which each was stored) stays on the CPU and is checkpointed as extra state.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from sslkit.errors import BadInput


class SkippedStepMaps:
    """Products of the missed-step maps ``A_{now-1} ... A_s`` for every start step ``s``.

    ``products[j]`` is the product for ``s = start + j`` (the identity for ``s = now``);
    :meth:`advance` left-multiplies them all by this step's map, so a lookup is one
    gather however many steps a row missed. Kept in float64; steps older than every
    stored row are dropped by :meth:`prune`.
    """

    def __init__(self, momentum: float, weight_decay: float) -> None:
        self.momentum = float(momentum)
        self.weight_decay = float(weight_decay)
        self.start = 0
        self.products = torch.eye(2, dtype=torch.float64).unsqueeze(0)

    @property
    def now(self) -> int:
        """The number of steps taken."""
        return self.start + len(self.products) - 1

    def step_map(self, lr: float) -> torch.Tensor:
        """``A_t`` of a step at learning rate ``lr``."""
        mu, lam = self.momentum, self.weight_decay
        return torch.tensor([[mu, lam], [-lr * mu, 1.0 - lr * lam]], dtype=torch.float64)

    def advance(self, lr: float, skipped: bool = False) -> None:
        """Account for one step at ``lr`` (``skipped``: no update at all, e.g. AMP overflow)."""
        if not skipped:
            self.products = self.step_map(lr) @ self.products
        self.products = torch.cat([self.products, torch.eye(2, dtype=torch.float64)[None]])

    def apply(self, velocity: torch.Tensor, weight: torch.Tensor,
              stored_at: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """Rows ``(v, u)`` stored before step ``stored_at`` brought forward to now."""
        maps = self.products[(stored_at - self.start).cpu()].to(weight.device)  # m x 2 x 2
        v, u = velocity.double(), weight.double()
        new_v = maps[:, 0, 0, None] * v + maps[:, 0, 1, None] * u
        new_u = maps[:, 1, 0, None] * v + maps[:, 1, 1, None] * u
        return new_v.to(velocity.dtype), new_u.to(weight.dtype)

    def prune(self, oldest: int) -> None:
        """Forget the products of start steps before ``oldest``."""
        drop = max(0, min(oldest, self.now) - self.start)
        if drop:
            self.products = self.products[drop:]
            self.start += drop

    def state_dict(self) -> dict[str, Any]:
        """Plain values for a checkpoint."""
        return {"start": self.start, "products": self.products.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.start = int(state["start"])
        self.products = state["products"].to(torch.float64).clone()


class SampledClassifier(nn.Module):
    """N unnormalised weight rows of dimension D, P of them in a device pool (see module doc).

    Args:
        num_rows: N, the number of classes (ConIC: training images).
        dim: D.
        pool_size: P (clamped to N; it must hold the global batch).
        momentum, weight_decay: the SGD settings the rows are trained with.
        generator: seeds the ``N(0, init_std^2)`` initial rows.
    """

    def __init__(self, num_rows: int, dim: int, pool_size: int, momentum: float,
                 weight_decay: float, generator: torch.Generator | None = None,
                 init_std: float = 1.0) -> None:  # fmt: skip
        super().__init__()
        pool_size = min(pool_size, num_rows)
        self.num_rows, self.dim, self.pool_size = num_rows, dim, pool_size
        self.momentum, self.weight_decay = float(momentum), float(weight_decay)
        store = torch.randn(num_rows, dim, generator=generator) * init_std
        self.store_weight = store  # N x D, host
        self.store_velocity = torch.zeros(num_rows, dim)
        self.stored_at = torch.zeros(num_rows, dtype=torch.long)
        self.maps = SkippedStepMaps(momentum, weight_decay)
        initial = torch.arange(pool_size)
        self.pool_weight = nn.Parameter(store[initial].clone())
        self.register_buffer("pool_velocity", torch.zeros(pool_size, dim))
        self.register_buffer("slot_row", initial.clone())  # P: row held by each slot
        self.register_buffer("slot_time", torch.full((pool_size,), -1, dtype=torch.long))
        slot_of = torch.full((num_rows,), -1, dtype=torch.long)
        slot_of[initial] = initial
        self.register_buffer("slot_of", slot_of)  # N: slot of each row, -1 outside

    @property
    def now(self) -> int:
        """Steps taken so far."""
        return self.maps.now

    @torch.no_grad()
    def bring_in(self, rows: torch.Tensor) -> None:
        """Make sure ``rows`` (the global batch, identical on every process) are in the pool.

        Rows already there are refreshed; the missing ones replace the slots loaded
        earliest (ties by slot number), whose rows go back to the host store.
        """
        rows = torch.unique(rows.to(self.slot_of.device))
        if len(rows) > self.pool_size:
            raise BadInput(f"a global batch of {len(rows)} images does not fit a classifier "
                           f"pool of {self.pool_size} rows: raise method.pool_size")  # fmt: skip
        now = self.now
        present = self.slot_of[rows] >= 0
        self.slot_time[self.slot_of[rows[present]]] = now
        missing = rows[~present]
        if len(missing) == 0:
            return
        order = self.slot_time * self.pool_size + torch.arange(self.pool_size,
                                                               device=self.slot_time.device)
        victims = torch.topk(order, len(missing), largest=False).indices
        self._evict(victims, now)
        self._load(missing, victims, now)

    def _evict(self, slots: torch.Tensor, now: int) -> None:
        rows = self.slot_row[slots]
        host_rows = rows.cpu()
        self.store_weight[host_rows] = self.pool_weight.data[slots].cpu()
        self.store_velocity[host_rows] = self.pool_velocity[slots].cpu()
        self.stored_at[host_rows] = now
        self.slot_of[rows] = -1

    def _load(self, rows: torch.Tensor, slots: torch.Tensor, now: int) -> None:
        host_rows = rows.cpu()
        device = self.pool_weight.device
        velocity, weight = self.maps.apply(self.store_velocity[host_rows].to(device),
                                           self.store_weight[host_rows].to(device),
                                           self.stored_at[host_rows])  # fmt: skip
        self.pool_weight.data[slots] = weight
        self.pool_velocity[slots] = velocity
        self.slot_row[slots] = rows
        self.slot_of[rows] = slots
        self.slot_time[slots] = now

    def slots(self, rows: torch.Tensor) -> torch.Tensor:
        """The pool slot of each of ``rows`` (they must have been brought in)."""
        return self.slot_of[rows]

    @torch.no_grad()
    def sgd_step(self, lr: float) -> None:
        """SGD with momentum and weight decay on the pool; the missed-step map for the rest.

        A non-finite gradient (an AMP overflow, when the engine skips its step) skips the
        update for every row.
        """
        grad = self.pool_weight.grad
        skipped = grad is not None and not bool(torch.isfinite(grad).all())
        if not skipped:
            d = self.pool_weight.data * self.weight_decay
            if grad is not None:
                d = d + grad
            self.pool_velocity.mul_(self.momentum).add_(d)
            self.pool_weight.data.add_(self.pool_velocity, alpha=-lr)
        self.pool_weight.grad = None
        self.maps.advance(lr, skipped=skipped)
        if self.now % 100 == 0:
            outside = self.slot_of.cpu() < 0
            if bool(outside.any()):
                self.maps.prune(int(self.stored_at[outside].min()))

    @torch.no_grad()
    def full_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All N ``(weights, velocities)`` as of now (host rows brought forward), on the CPU."""
        weight = self.store_weight.clone()
        velocity = self.store_velocity.clone()
        outside = (self.slot_of.cpu() < 0).nonzero().squeeze(1)
        if len(outside):
            velocity[outside], weight[outside] = self.maps.apply(
                velocity[outside], weight[outside], self.stored_at[outside])
        rows = self.slot_row.cpu()
        weight[rows] = self.pool_weight.data.cpu()
        velocity[rows] = self.pool_velocity.cpu()
        return weight, velocity

    # -- checkpointing: the host store travels as extra state ---------------------------
    def get_extra_state(self) -> dict[str, Any]:
        """The host store and the missed-step maps."""
        return {"store_weight": self.store_weight, "store_velocity": self.store_velocity,
                "stored_at": self.stored_at, "maps": self.maps.state_dict()}  # fmt: skip

    def set_extra_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`get_extra_state`."""
        self.store_weight = state["store_weight"].cpu().clone()
        self.store_velocity = state["store_velocity"].cpu().clone()
        self.stored_at = state["stored_at"].cpu().clone()
        self.maps.load_state_dict(state["maps"])
