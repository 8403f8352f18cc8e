"""Momentum (EMA) copies: parameter averaging, untouched BN buffers, frozen copies."""

from __future__ import annotations

import torch
from torch import nn

from sslkit.nn.momentum import momentum_copy, momentum_update


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))


def _shifted_online(target: nn.Module) -> nn.Module:
    """A copy of ``target`` whose parameters differ (+1) and whose BN buffers differ."""
    online = momentum_copy(target)
    with torch.no_grad():
        for param in online.parameters():
            param.add_(1.0)
        online[1].running_mean.fill_(5.0)
        online[1].running_var.fill_(7.0)
    for param in online.parameters():
        param.requires_grad_(True)
    return online


def test_momentum_copy_is_frozen_equal_and_independent():
    """The copy has equal values, requires_grad False, and does not share storage."""
    online = _net()
    target = momentum_copy(online)
    for p_online, p_target in zip(online.parameters(), target.parameters(), strict=True):
        assert torch.equal(p_online, p_target)
        assert p_online.requires_grad and not p_target.requires_grad
    with torch.no_grad():
        online[0].weight.add_(1.0)
    assert not torch.equal(online[0].weight, target[0].weight)


def test_momentum_zero_copies_online():
    """m=0: the target parameters become the online parameters."""
    target = _net()
    online = _shifted_online(target)
    momentum_update(online, target, 0.0)
    for p_online, p_target in zip(online.parameters(), target.parameters(), strict=True):
        assert torch.equal(p_target, p_online)


def test_momentum_one_leaves_target_unchanged():
    """m=1: the target parameters do not move."""
    target = _net()
    before = [p.clone() for p in target.parameters()]
    momentum_update(_shifted_online(target), target, 1.0)
    for p_before, p_target in zip(before, target.parameters(), strict=True):
        assert torch.equal(p_target, p_before)


def test_momentum_half_averages():
    """m=0.5: every target parameter is the mean of the two (here: old value + 0.5)."""
    target = _net()
    before = [p.clone() for p in target.parameters()]
    online = _shifted_online(target)
    momentum_update(online, target, 0.5)
    for p_before, p_online, p_target in zip(before, online.parameters(), target.parameters(),
                                            strict=True):  # fmt: skip
        assert torch.allclose(p_target, (p_before + p_online) / 2, atol=1e-6)
        assert torch.allclose(p_target, p_before + 0.5, atol=1e-6)


def test_general_momentum_formula():
    """m=0.9: θ_t ← 0.9·θ_t + 0.1·θ_o, and the online network is untouched."""
    target = _net()
    before = [p.clone() for p in target.parameters()]
    online = _shifted_online(target)
    online_before = [p.clone() for p in online.parameters()]
    momentum_update(online, target, 0.9)
    for t0, o0, t1, o1 in zip(before, online_before, target.parameters(), online.parameters(),
                              strict=True):  # fmt: skip
        assert torch.allclose(t1, 0.9 * t0 + 0.1 * o0, atol=1e-6)
        assert torch.equal(o1, o0)


def test_batchnorm_buffers_not_averaged():
    """Running statistics of the target are not touched by the update."""
    target = _net()
    online = _shifted_online(target)
    momentum_update(online, target, 0.0)
    assert torch.equal(target[1].running_mean, torch.zeros(4))
    assert torch.equal(target[1].running_var, torch.ones(4))
    assert int(target[1].num_batches_tracked) == 0


def test_update_makes_no_graph():
    """After the update the target parameters still require no grad."""
    target = momentum_copy(_net())
    online = _shifted_online(target)
    momentum_update(online, target, 0.5)
    assert all(not p.requires_grad and p.grad_fn is None for p in target.parameters())
