"""Optimisers (SGD with momentum, LARS) and learning-rate schedules."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from sslkit.errors import BadInput


class LARS(torch.optim.Optimizer):
    """LARS (You et al. 2017) as in SimSiam/MoCo v3: SGD whose step is scaled per tensor.

    For tensors with more than one dimension the update ``g + wd·w`` is multiplied by
    ``trust · ‖w‖ / ‖g + wd·w‖``; biases and norm parameters (1-d) get plain SGD without
    weight decay.
    """

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
                 trust_coefficient: float = 0.001) -> None:  # fmt: skip
        defaults = {"lr": lr, "momentum": momentum, "weight_decay": weight_decay,
                    "trust_coefficient": trust_coefficient}  # fmt: skip
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):  # noqa: D102 - torch.optim.Optimizer API
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                update = param.grad
                if param.ndim > 1:
                    update = update.add(param, alpha=group["weight_decay"])
                    param_norm, update_norm = torch.norm(param), torch.norm(update)
                    ratio = torch.where(
                        (param_norm > 0) & (update_norm > 0),
                        group["trust_coefficient"] * param_norm / update_norm,
                        torch.ones_like(param_norm),
                    )
                    update = update.mul(ratio)
                state = self.state[param]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(param)
                buffer = state["momentum_buffer"]
                buffer.mul_(group["momentum"]).add_(update)
                param.add_(buffer, alpha=-group["lr"])
        return loss


def build_optimizer(groups: list[dict[str, Any]], train: dict[str, Any], lr: float):
    """SGD or LARS over the method's parameter groups, each remembering its base lr.

    A group may set ``lr_scale``, ``fixed_lr``, ``weight_decay`` and ``momentum``.
    """
    torch_groups = []
    for group in groups:
        scale = float(group.get("lr_scale", 1.0))
        torch_groups.append({
            "params": list(group["params"]),
            "lr": lr * scale,
            "base_lr": lr * scale,
            "fixed_lr": bool(group.get("fixed_lr", False)),
            "weight_decay": float(group.get("weight_decay", train["weight_decay"])),
            "momentum": float(group.get("momentum", train["momentum"])),
        })  # fmt: skip
    name = train["optimizer"]
    if name == "sgd":
        return torch.optim.SGD(torch_groups, lr=lr, momentum=train["momentum"],
                               weight_decay=train["weight_decay"])  # fmt: skip
    if name == "lars":
        return LARS(torch_groups, lr=lr, momentum=train["momentum"],
                    weight_decay=train["weight_decay"])  # fmt: skip
    raise BadInput(f"unknown optimizer '{name}': use sgd or lars")


def scaled_lr(train: dict[str, Any]) -> float:
    """The base lr after the linear scaling rule (``lr × batch / reference_batch_size``)."""
    if train["lr_scaling"] == "linear":
        return train["lr"] * train["batch_size"] / train["reference_batch_size"]
    if train["lr_scaling"] != "none":
        raise BadInput(f"unknown lr_scaling '{train['lr_scaling']}': use none or linear")
    return train["lr"]


def lr_factor(train: dict[str, Any], epoch_position: float) -> float:
    """The lr multiplier at ``epoch_position`` (epochs done, fractional when per step).

    Linear warm-up from ``warmup_start`` over ``warmup_epochs``, then ``cosine``
    (½(1+cos(π·t/T)) down to ``final_lr_ratio``), ``step`` (×gamma at each milestone) or
    ``constant``. With ``schedule_unit: epoch`` the position is the 0-based epoch index, as
    in the MoCo/PCL/HCSC scripts.
    """
    epochs = train["epochs"]
    warmup = train["warmup_epochs"]
    if epoch_position < warmup:
        start = train["warmup_start"]
        return start + (1 - start) * epoch_position / warmup
    kind = train["schedule"]
    if kind == "cosine":
        span = max(epochs - warmup, 1e-8)
        progress = min((epoch_position - warmup) / span, 1.0)
        final = train["final_lr_ratio"]
        return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * progress))
    if kind == "step":
        passed = sum(1 for milestone in train["milestones"] if epoch_position >= milestone)
        return train["gamma"] ** passed
    if kind == "constant":
        return 1.0
    raise BadInput(f"unknown schedule '{kind}': use cosine, step or constant")


def apply_lr(optimizer: torch.optim.Optimizer, factor: float) -> None:
    """Set every group's lr to ``base_lr × factor`` (``fixed_lr`` groups keep ``base_lr``)."""
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] if group["fixed_lr"] else group["base_lr"] * factor


def trainable_parameter_count(module: nn.Module) -> int:
    """Number of parameters that receive gradients."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
