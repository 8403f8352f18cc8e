"""Learning-rate schedules, lr application, LARS and the linear scaling rule."""

from __future__ import annotations

import math

import pytest
import torch

from sslkit.config import TRAIN_DEFAULTS
from sslkit.engine.optim import LARS, apply_lr, build_optimizer, lr_factor, scaled_lr
from sslkit.errors import BadInput


def _train(**overrides) -> dict:
    return {**TRAIN_DEFAULTS, "epochs": 10, "warmup_epochs": 0, "warmup_start": 0.0,
            "final_lr_ratio": 0.0, **overrides}  # fmt: skip


def test_cosine_start_middle_end():
    """Cosine: 1 at epoch 0, 1/2 at E/2, 0 at E, (1+cos(π/4))/2 at E/4; clamped after E."""
    train = _train(schedule="cosine")
    assert lr_factor(train, 0) == pytest.approx(1.0)
    assert lr_factor(train, 5) == pytest.approx(0.5)
    assert lr_factor(train, 10) == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(train, 2.5) == pytest.approx((1 + math.sqrt(0.5)) / 2)
    assert lr_factor(train, 9) == pytest.approx((1 + math.cos(math.pi * 0.9)) / 2)
    assert lr_factor(train, 12) == pytest.approx(0.0, abs=1e-12)


def test_cosine_final_ratio():
    """final_lr_ratio r: the curve runs from 1 down to r, r + (1-r)/2 half-way."""
    train = _train(schedule="cosine", final_lr_ratio=0.1)
    assert lr_factor(train, 0) == pytest.approx(1.0)
    assert lr_factor(train, 5) == pytest.approx(0.55)
    assert lr_factor(train, 10) == pytest.approx(0.1)


def test_linear_warmup_then_cosine():
    """Warm-up from warmup_start to 1 over warmup_epochs, then cosine over the rest."""
    train = _train(schedule="cosine", epochs=12, warmup_epochs=2, warmup_start=0.1)
    assert lr_factor(train, 0) == pytest.approx(0.1)
    assert lr_factor(train, 0.5) == pytest.approx(0.1 + 0.9 * 0.25)
    assert lr_factor(train, 1) == pytest.approx(0.55)
    assert lr_factor(train, 2) == pytest.approx(1.0)
    assert lr_factor(train, 7) == pytest.approx(0.5)  # half of the 10 cosine epochs
    assert lr_factor(train, 12) == pytest.approx(0.0, abs=1e-12)


def test_step_schedule_milestones():
    """Step: ×gamma at each milestone reached (the milestone epoch included)."""
    train = _train(schedule="step", milestones=[3, 6], gamma=0.1)
    expected = {0: 1.0, 2: 1.0, 2.99: 1.0, 3: 0.1, 5: 0.1, 6: 0.01, 9: 0.01}
    for position, factor in expected.items():
        assert lr_factor(train, position) == pytest.approx(factor), position


def test_step_schedule_with_warmup():
    """Warm-up applies before the step schedule too."""
    train = _train(schedule="step", milestones=[4], gamma=0.5, warmup_epochs=2)
    assert lr_factor(train, 1) == pytest.approx(0.5)
    assert lr_factor(train, 3) == pytest.approx(1.0)
    assert lr_factor(train, 4) == pytest.approx(0.5)


def test_constant_and_unknown_schedule():
    """Constant is always 1; an unknown schedule is bad input."""
    assert lr_factor(_train(schedule="constant"), 7.3) == 1.0
    with pytest.raises(BadInput, match="unknown schedule 'linear'"):
        lr_factor(_train(schedule="linear"), 1)


def _params(*shapes):
    return [torch.nn.Parameter(torch.ones(shape)) for shape in shapes]


def test_build_optimizer_groups_and_apply_lr():
    """Groups get lr x lr_scale as base_lr; apply_lr scales all but fixed_lr groups."""
    p1, p2, p3 = _params(2, 3, 4)
    groups = [{"params": [p1]}, {"params": [p2], "fixed_lr": True},
              {"params": [p3], "lr_scale": 0.5, "weight_decay": 0.0}]  # fmt: skip
    optimizer = build_optimizer(groups, _train(optimizer="sgd", weight_decay=1e-4), lr=0.2)
    assert isinstance(optimizer, torch.optim.SGD)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.2, 0.2, 0.1])
    assert [g["weight_decay"] for g in optimizer.param_groups] == [1e-4, 1e-4, 0.0]
    apply_lr(optimizer, 0.5)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.1, 0.2, 0.05])
    apply_lr(optimizer, 0.0)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.0, 0.2, 0.0])
    assert [g["base_lr"] for g in optimizer.param_groups] == pytest.approx([0.2, 0.2, 0.1])


def test_build_optimizer_lars_and_unknown():
    """optimizer 'lars' builds LARS; an unknown name is bad input."""
    assert isinstance(build_optimizer([{"params": _params(2)}], _train(optimizer="lars"), 0.1),
                      LARS)  # fmt: skip
    with pytest.raises(BadInput, match="unknown optimizer 'adam'"):
        build_optimizer([{"params": _params(2)}], _train(optimizer="adam"), 0.1)


def test_lars_two_steps_by_hand():
    """2-d weight: trust ratio scaling of g + wd·w with momentum; 1-d bias: plain SGD."""
    lr, momentum, wd, trust = 0.1, 0.9, 0.1, 0.001
    weight = torch.nn.Parameter(torch.tensor([[3.0, 4.0]]))
    bias = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    optimizer = LARS([weight, bias], lr=lr, momentum=momentum, weight_decay=wd,
                     trust_coefficient=trust)  # fmt: skip
    grad_w, grad_b = [1.0, 0.0], [0.5, 0.5]

    def lars_update(w):
        u = [grad_w[i] + wd * w[i] for i in range(2)]
        ratio = trust * math.hypot(*w) / math.hypot(*u)
        return [ratio * x for x in u]

    # step 1: u = (1.3, 0.4), ‖w‖ = 5, ‖u‖ = sqrt(1.85); buffer = u·ratio
    w0 = [3.0, 4.0]
    buf = lars_update(w0)
    assert buf[0] == pytest.approx(1.3 * 0.005 / math.sqrt(1.85))
    w1 = [w0[i] - lr * buf[i] for i in range(2)]
    # step 2: buffer = 0.9·buffer + update at the new weight
    update = lars_update(w1)
    buf = [momentum * buf[i] + update[i] for i in range(2)]
    w2 = [w1[i] - lr * buf[i] for i in range(2)]
    # bias: buffer g, then 0.9·g + g, so b2 = b0 - lr·g - lr·1.9·g (no weight decay)
    b2 = [b - lr * 0.5 - lr * (momentum + 1) * 0.5 for b in (1.0, -2.0)]
    for _ in range(2):
        weight.grad = torch.tensor([grad_w])
        bias.grad = torch.tensor(grad_b)
        optimizer.step()
    assert weight.detach()[0].tolist() == pytest.approx(w2, rel=1e-6)
    assert bias.detach().tolist() == pytest.approx(b2, rel=1e-6)


def test_lars_zero_weight_uses_unit_ratio():
    """A 2-d tensor with zero norm takes a plain SGD step (ratio 1)."""
    weight = torch.nn.Parameter(torch.zeros(2, 2))
    optimizer = LARS([weight], lr=0.5, momentum=0.9, weight_decay=0.1)
    weight.grad = torch.ones(2, 2)
    optimizer.step()
    assert torch.allclose(weight.detach(), torch.full((2, 2), -0.5))


def test_lars_skips_parameters_without_grad():
    """Parameters without a gradient are left alone."""
    weight = torch.nn.Parameter(torch.ones(2, 2))
    LARS([weight], lr=0.5).step()
    assert torch.equal(weight.detach(), torch.ones(2, 2))


def test_scaled_lr_linear_rule():
    """linear: lr × batch / reference; none: lr unchanged; other names: bad input."""
    train = _train(lr=0.1, batch_size=512, reference_batch_size=256)
    assert scaled_lr({**train, "lr_scaling": "linear"}) == pytest.approx(0.2)
    assert scaled_lr({**train, "lr_scaling": "linear", "batch_size": 64}) == pytest.approx(0.025)
    assert scaled_lr({**train, "lr_scaling": "none"}) == 0.1
    with pytest.raises(BadInput, match="lr_scaling 'sqrt'"):
        scaled_lr({**train, "lr_scaling": "sqrt"})
