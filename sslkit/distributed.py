"""Explicit distributed helpers: each works (as the identity) in a single process too.

Launch under ``torchrun``: RANK, WORLD_SIZE and LOCAL_RANK come from the environment;
gloo is used on CPU, NCCL on GPUs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from sslkit.errors import BadInput


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits: its rank, the number of processes and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """True on global rank 0 (the process that writes files and logs)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True when more than one process takes part."""
        return self.world_size > 1


def choose_device(choice: str, local_rank: int = 0) -> torch.device:
    """``auto`` (CUDA when present), ``cpu`` or ``cuda``; a missing GPU is bad input."""
    if choice not in ("auto", "cpu", "cuda"):
        raise BadInput(f"unknown device '{choice}': use auto, cpu or cuda")
    if choice == "cuda" and not torch.cuda.is_available():
        raise BadInput("--device cuda was asked for but no CUDA GPU is visible: use --device cpu")
    if choice == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", local_rank)


def setup(device_choice: str = "auto") -> DistEnv:
    """Join the process group when launched by torchrun; otherwise a single process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = choose_device(device_choice, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistEnv(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def teardown() -> None:
    """Leave the process group if one was joined."""
    if dist.is_initialized():
        dist.destroy_process_group()


def world_size() -> int:
    """Number of processes (1 without a process group)."""
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    """This process's global rank (0 without a process group)."""
    return dist.get_rank() if dist.is_initialized() else 0


def barrier() -> None:
    """Wait for every process (no-op in a single process)."""
    if dist.is_initialized():
        dist.barrier()


def all_gather_objects(item: object) -> list[object]:
    """Every rank's picklable ``item``, in rank order (``[item]`` in a single process)."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return [item]
    items: list[object] = [None] * dist.get_world_size()
    dist.all_gather_object(items, item)
    return items


def any_rank(flags: list[bool], device: torch.device) -> list[bool]:
    """Element-wise OR of ``flags`` over all ranks (the flags themselves in one process)."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return list(flags)
    tensor = torch.tensor([int(flag) for flag in flags], dtype=torch.int32, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return [bool(value) for value in tensor.tolist()]


@torch.no_grad()
def all_gather_concat(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate equal-shaped tensors of all ranks along dim 0, in rank order; no gradient."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=0)


def all_gather_variable(tensor: torch.Tensor) -> torch.Tensor:
    """Like :func:`all_gather_concat` for tensors whose first dimension differs per rank."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return tensor
    count = torch.tensor([tensor.shape[0]], device=tensor.device)
    counts = all_gather_concat(count).tolist()
    padded = tensor.new_zeros((max(counts), *tensor.shape[1:]))
    padded[: tensor.shape[0]] = tensor
    gathered = all_gather_concat(padded)
    chunks = [gathered[i * max(counts) : i * max(counts) + c] for i, c in enumerate(counts)]
    return torch.cat(chunks, dim=0)


def broadcast_(tensor: torch.Tensor, src: int = 0) -> torch.Tensor:
    """Overwrite ``tensor`` in place with rank ``src``'s copy (identity in one process)."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.broadcast(tensor, src=src)
    return tensor


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """Mean of ``tensor`` over ranks (a new tensor; identity in one process)."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return tensor
    out = tensor.clone()
    dist.all_reduce(out)
    return out / dist.get_world_size()


def all_reduce_gradients(parameters, dist_env: DistEnv) -> None:
    """Average the gradients of ``parameters`` over the processes (what DDP does for the
    parameters it manages; for those a method trains with its own optimiser)."""
    if not dist_env.distributed:
        return
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= dist_env.world_size
    offset = 0
    for grad in grads:
        grad.copy_(flat[offset: offset + grad.numel()].view_as(grad))
        offset += grad.numel()


@torch.no_grad()
def shuffle_across_ranks(
    images: torch.Tensor, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Shuffle-BN, first half: this rank's slice of a globally permuted batch.

    Gathers the images of all ranks, draws one permutation on rank 0 (broadcast to all)
    and returns this rank's slice plus the inverse permutation for :func:`unshuffle_across_ranks`.
    """
    gathered = all_gather_concat(images)
    total, local = gathered.shape[0], images.shape[0]
    permutation = torch.randperm(total, generator=generator, device="cpu").to(images.device)
    broadcast_(permutation)
    inverse = torch.argsort(permutation)
    mine = permutation.view(total // local, local)[rank()]
    return gathered[mine], inverse


@torch.no_grad()
def unshuffle_across_ranks(features: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
    """Shuffle-BN, second half: the features of this rank's own images, in its order."""
    gathered = all_gather_concat(features)
    local = features.shape[0]
    mine = inverse.view(gathered.shape[0] // local, local)[rank()]
    return gathered[mine]
