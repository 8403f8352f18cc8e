"""Momentum (EMA) copies of a network, as in MoCo, BYOL and their descendants."""

from __future__ import annotations

import copy

import torch
from torch import nn


def momentum_copy(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` with equal parameters and ``requires_grad=False``."""
    target = copy.deepcopy(module)
    for param in target.parameters():
        param.requires_grad_(False)
    return target


@torch.no_grad()
def momentum_update(online: nn.Module, target: nn.Module, momentum: float) -> None:
    """``θ_target ← m·θ_target + (1−m)·θ_online`` over parameters only.

    BatchNorm running statistics of the target are not averaged: they follow the target's
    own forward passes in train mode (MoCo's behaviour).
    """
    online_params = [p.detach() for p in online.parameters()]
    target_params = list(target.parameters())
    torch._foreach_mul_(target_params, momentum)
    torch._foreach_add_(target_params, online_params, alpha=1.0 - momentum)
