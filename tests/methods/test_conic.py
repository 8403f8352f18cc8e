"""ConIC: the losses on small tensors and the method's two classifiers."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from sslkit.data.base import DataInfo
from sslkit.errors import BadInput
from sslkit.methods.base import Batch
from sslkit.methods.conic import (
    ConIC,
    consistency_loss,
    full_classification_loss,
    sampled_classification_loss,
)
from sslkit.methods.npid import full_softmax_loss
from sslkit.models.backbones import build_backbone
from tests.conftest import step_context

INFO = DataInfo("toy", 10, 32, 3, (0.5,) * 3, (0.5,) * 3, num_samples=24)


def _unit(*shape, seed=0):
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)), dim=1)


def test_consistency_is_zero_for_identical_views_and_squared_cosine_distance_otherwise():
    x = _unit(5, 8)
    assert consistency_loss(x, x).item() == pytest.approx(0.0, abs=1e-7)
    y = _unit(5, 8, seed=1)
    expected = ((1 - (x * y).sum(1)) ** 2).mean()
    assert consistency_loss(x, y).item() == pytest.approx(expected.item())
    assert consistency_loss(x, -x).item() == pytest.approx(4.0)  # the maximum


def test_consistency_gradient_is_minus_two_one_minus_cos_times_the_other_view():
    x1, x2 = _unit(1, 6), _unit(1, 6, seed=2)
    x1.requires_grad_(True)
    consistency_loss(x1, x2).backward()
    expected = -2 * (1 - (x1 * x2).sum()) * x2
    torch.testing.assert_close(x1.grad, expected.detach())


def test_equal_logits_give_exactly_ln_n_and_random_unit_weights_about_ln_n():
    features = _unit(4, 8)
    weights = torch.ones(50, 8)  # every row the same: all logits equal
    targets = torch.arange(4)
    assert full_classification_loss(features, weights, targets, 0.1).item() == pytest.approx(
        math.log(50), rel=1e-6)
    random = full_classification_loss(_unit(256, 128), torch.randn(1000, 128),
                                      torch.arange(256), 1.0)  # fmt: skip
    assert random.item() == pytest.approx(math.log(1000), rel=0.02)


def test_weights_equal_to_the_features_give_npid_full_softmax():
    bank = _unit(20, 8, seed=3)
    features, targets = bank[[2, 5, 7]], torch.tensor([2, 5, 7])
    ours = full_classification_loss(features, 3.0 * bank, targets, 0.07)  # scale is normalised
    assert ours.item() == pytest.approx(full_softmax_loss(features, bank, targets, 0.07).item(),
                                        rel=1e-5)  # fmt: skip


def test_a_pool_of_all_rows_with_beta_one_is_the_full_loss_with_its_gradients():
    rows = torch.randn(12, 8, requires_grad=True)
    features = _unit(4, 8)
    targets = torch.tensor([1, 4, 7, 11])
    full = full_classification_loss(features, rows, targets, 0.2)
    (full_grad,) = torch.autograd.grad(full, rows)
    # pool = every row (slot s holds row s): the sum over the other N - 1 rows, beta = 1
    sampled = sampled_classification_loss(features, rows, targets, 0.2, beta=1.0)
    (sampled_grad,) = torch.autograd.grad(sampled, rows)
    assert sampled.item() == pytest.approx(full.item(), rel=1e-6)
    torch.testing.assert_close(sampled_grad, full_grad)


def test_beta_scales_only_the_other_rows():
    rows = torch.randn(6, 4)
    feature = _unit(1, 4)
    logits = (feature @ F.normalize(rows, dim=1).t() / 0.5)[0]
    beta = 7.5
    expected = -logits[2] + torch.log(logits[2].exp() + beta * (logits.exp().sum()
                                                                 - logits[2].exp()))  # fmt: skip
    value = sampled_classification_loss(feature, rows, torch.tensor([2]), 0.5, beta)
    assert value.item() == pytest.approx(expected.item(), rel=1e-5)
    with_own = sampled_classification_loss(feature, rows, torch.tensor([2]), 0.5, beta,
                                           include_own=True)  # fmt: skip
    expected_own = -logits[2] + torch.log(logits[2].exp() + beta * logits.exp().sum())
    assert with_own.item() == pytest.approx(expected_own.item(), rel=1e-5)


def _conic(**values) -> ConIC:
    torch.manual_seed(0)
    return ConIC(ConIC.Config(hidden_dim=32, dim=16, **values), build_backbone("resnet18"),
                 INFO).train()  # fmt: skip


def _batch(step=0, size=8):
    generator = torch.Generator().manual_seed(step)
    views = [torch.randn(size, 3, 32, 32, generator=generator) for _ in range(2)]
    return Batch(views, (torch.arange(size) + size * step) % INFO.num_samples)


def test_the_loss_is_classification_plus_alpha_consistency():
    method = _conic(consistency_weight=2.5)
    out = method.training_step(_batch(), step_context())
    assert set(out) == {"loss", "loss/classification", "loss/consistency"}
    total = out["loss/classification"] + 2.5 * out["loss/consistency"]
    assert out["loss"].item() == pytest.approx(total.item(), rel=1e-6)


def test_a_sampled_pool_of_every_image_trains_exactly_like_the_full_classifier():
    """pool_size = N: beta = 1, so loss and every update equal the full classifier's."""
    full, sampled = _conic(), _conic(classifier="sampled", pool_size=INFO.num_samples)
    sampled.sampled.pool_weight.data.copy_(full.classifier.data)
    sampled.sampled.store_weight.copy_(full.classifier.data)
    optimizers = []
    for method in (full, sampled):
        groups = method.param_groups()
        optimizers.append(torch.optim.SGD(
            [{"params": g["params"], "lr": 0.1 * g.get("lr_scale", 1.0),
              "momentum": g.get("momentum", 0.9), "weight_decay": g.get("weight_decay", 1e-4)}
             for g in groups], lr=0.1))  # fmt: skip
    for step in range(3):
        ctx = step_context()
        ctx.lr, ctx.step = 0.1, step
        losses = []
        for method, optimizer in zip((full, sampled), optimizers, strict=True):
            optimizer.zero_grad()
            loss = method.training_step(_batch(step), ctx)["loss"]
            loss.backward()
            optimizer.step()
            method.after_optimizer_step(ctx)
            losses.append(loss.item())
        assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    torch.testing.assert_close(sampled.classifier_weights(), full.classifier_weights(),
                               rtol=1e-4, atol=1e-5)  # fmt: skip


def test_effective_rows_have_unit_norm_and_groups_are_separate():
    method = _conic(classifier="sampled", pool_size=10)
    method.training_step(_batch(), step_context())
    norms = method.classifier_weights().norm(dim=1)
    torch.testing.assert_close(norms, torch.ones_like(norms))
    network, pool = method.param_groups()
    assert pool["params"] == [method.sampled.pool_weight] and pool["lr_scale"] == 0.0
    assert all(p is not method.sampled.pool_weight for p in network["params"])


def test_checkpoint_round_trip_keeps_the_host_store():
    a = _conic(classifier="sampled", pool_size=10)
    for step in range(3):
        ctx = step_context()
        ctx.lr = 0.2
        a.training_step(_batch(step), ctx)["loss"].backward()
        a.after_optimizer_step(ctx)
    b = _conic(classifier="sampled", pool_size=10)
    b.load_state_dict(a.state_dict())
    torch.testing.assert_close(b.classifier_weights(), a.classifier_weights())
    assert b.sampled.now == 3


def test_bad_settings_are_bad_input():
    with pytest.raises(BadInput, match="classifier"):
        _conic(classifier="sharded")
    with pytest.raises(BadInput, match="number of training images"):
        ConIC(ConIC.Config(), build_backbone("resnet18"),
              DataInfo("toy", 10, 32, 3, (0.5,) * 3, (0.5,) * 3))  # fmt: skip
