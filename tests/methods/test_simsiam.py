"""SimSiam and BYOL: losses, stop-gradient, heads and schedules."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sslkit.config import resolve
from sslkit.data.base import DataInfo
from sslkit.engine.optim import apply_lr, build_optimizer
from sslkit.errors import BadInput
from sslkit.methods.base import Batch
from sslkit.methods.byol import BYOL, cosine_momentum
from sslkit.methods.registry import get_method
from sslkit.methods.simsiam import SimSiam, negative_cosine
from sslkit.models.backbones import build_backbone
from tests.conftest import step_context

INFO = DataInfo("toy", 10, 32, 3, (0.5,) * 3, (0.5,) * 3, num_samples=64)


def _simsiam(**values) -> SimSiam:
    torch.manual_seed(0)
    values = {"dim": 32, "pred_dim": 8, **values}
    return SimSiam(SimSiam.Config(**values), build_backbone("resnet18"), INFO).train()


def _byol(**values) -> BYOL:
    torch.manual_seed(0)
    values = {"dim": 16, "hidden_dim": 32, "pred_dim": 32, **values}
    return BYOL(BYOL.Config(**values), build_backbone("resnet18"), INFO).train()


def _batch(views=2, size=8, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return Batch([torch.randn(size, 3, 32, 32, generator=generator) for _ in range(views)],
                 torch.arange(size))  # fmt: skip


def test_negative_cosine_is_minus_one_at_alignment_and_in_range():
    z = torch.randn(6, 5)
    assert negative_cosine(z, z).item() == pytest.approx(-1.0)
    assert negative_cosine(2 * z, z).item() == pytest.approx(-1.0)  # scale-free
    assert negative_cosine(-z, z).item() == pytest.approx(1.0)
    value = negative_cosine(torch.randn(50, 5), torch.randn(50, 5)).item()
    assert -1.0 <= value <= 1.0


def test_the_target_side_gets_no_gradient():
    p = torch.randn(4, 3, requires_grad=True)
    z = torch.randn(4, 3, requires_grad=True)
    negative_cosine(p, z).backward()
    assert z.grad is None and p.grad is not None


def test_identity_predictor_and_identical_views_give_minus_one():
    method = _simsiam()
    method.predictor = torch.nn.Identity()
    x = torch.randn(8, 3, 32, 32)
    out = method.training_step(Batch([x, x], torch.arange(8)), step_context())
    assert out["loss"].item() == pytest.approx(-1.0, abs=1e-5)


def test_the_loss_is_symmetric_in_the_two_views():
    method = _simsiam()
    a, b = _batch().views
    forward = method.training_step(Batch([a, b], torch.arange(8)), step_context())["loss"]
    backward = method.training_step(Batch([b, a], torch.arange(8)), step_context())["loss"]
    assert forward.item() == pytest.approx(backward.item(), rel=1e-5)


def test_projector_ends_in_affine_free_bn_with_a_frozen_bias_and_whitened_outputs():
    method = _simsiam()
    last_bn, last_linear = method.projector[-1], method.projector[-2]
    assert isinstance(last_bn, torch.nn.BatchNorm1d) and not last_bn.affine
    assert not last_linear.bias.requires_grad
    z = method.projector(method.backbone(torch.randn(16, 3, 32, 32)))
    torch.testing.assert_close(z.mean(0), torch.zeros(32), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.var(0, unbiased=False), torch.ones(32), atol=1e-3, rtol=0)
    bias = last_linear.bias.clone()
    train = resolve(SimSiam, {})["train"]
    optimizer = build_optimizer(method.param_groups(), train, 0.1)
    method.training_step(_batch(), step_context())["loss"].backward()
    optimizer.step()
    assert torch.equal(last_linear.bias, bias)


def test_fixed_predictor_lr_stays_at_its_initial_value():
    method = _simsiam()
    train = resolve(SimSiam, {})["train"]
    optimizer = build_optimizer(method.param_groups(), train, 0.05)
    apply_lr(optimizer, 0.01)
    encoder, predictor = optimizer.param_groups
    assert encoder["lr"] == pytest.approx(0.0005) and predictor["lr"] == pytest.approx(0.05)
    predictor_ids = {id(p) for p in method.predictor.parameters()}
    assert {id(p) for p in predictor["params"]} == predictor_ids
    assert not predictor_ids & {id(p) for p in encoder["params"]}


def test_residual_blocks_start_at_zero_scale():
    method = _simsiam()
    assert float(method.backbone.layer1[0].bn2.weight.detach().abs().sum()) == 0.0
    plain = _simsiam(zero_init_residual=False)
    assert float(plain.backbone.layer1[0].bn2.weight.detach().sum()) > 0


def test_multi_crop_loss_is_the_mean_over_the_directed_pairs():
    method = _simsiam(multi_crop=True, local_crops=[[0.5, [0.1, 0.4]]] * 2)
    batch = _batch(views=4)
    out = method.training_step(batch, step_context())
    z = [method.projector(method.backbone(v)) for v in batch.views]
    p = [method.predictor(x) for x in z]
    pairs = [(0, 1), (1, 0), (2, 0), (2, 1), (3, 0), (3, 1)]
    expected = sum(negative_cosine(p[q], z[t]) for q, t in pairs) / 6
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert {"loss/global", "loss/local"} <= set(out)
    everything = _simsiam(multi_crop=True, local_crops=[[0.5, [0.1, 0.4]]] * 2, crop_pairs="all")
    assert everything.training_step(batch, step_context())["loss"].item() != pytest.approx(
        out["loss"].item())


def test_byol_momentum_rises_from_base_to_one_along_a_cosine():
    assert cosine_momentum(0.996, 0, 100) == pytest.approx(0.996)
    assert cosine_momentum(0.996, 50, 100) == pytest.approx(0.998)
    assert cosine_momentum(0.996, 100, 100) == pytest.approx(1.0)


def test_byol_loss_is_twice_the_mean_of_two_minus_two_cos_against_the_target():
    method = _byol()
    batch = _batch()
    out = method.training_step(batch, step_context())
    online = [method.predictor(method.projector(method.backbone(v))) for v in batch.views]
    with torch.no_grad():
        target = [method.target(v) for v in batch.views]

    def term(p, z):
        return (2 - 2 * F.cosine_similarity(p, z, dim=1)).mean()

    expected = term(online[0], target[1]) + term(online[1], target[0])
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert 0.0 <= out["loss"].item() <= 8.0


def test_byol_target_is_an_ema_that_never_gets_gradients():
    method = _byol(momentum=0.5, momentum_schedule="constant")
    target_before = [p.clone() for p in method.target.parameters()]
    assert all(not p.requires_grad for p in method.target.parameters())
    method.training_step(_batch(), step_context())["loss"].backward()
    assert all(p.grad is None for p in method.target.parameters())
    with torch.no_grad():
        for p in method.projector.parameters():
            p.add_(1.0)
    method.after_optimizer_step(step_context())
    online = list(method.backbone.parameters()) + list(method.projector.parameters())
    for before, after, now in zip(target_before, method.target.parameters(), online, strict=True):
        torch.testing.assert_close(after, 0.5 * before + 0.5 * now)


def test_byol_updates_the_target_every_n_steps():
    method = _byol(target_update_every=2)
    with torch.no_grad():
        for p in method.projector.parameters():
            p.add_(1.0)
    snapshot = [p.clone() for p in method.target.parameters()]
    ctx = step_context()
    ctx.steps_per_epoch = 100  # (momentum 1 only at the last step)
    method.after_optimizer_step(ctx)  # step 0: (0 + 1) % 2 != 0
    assert all(torch.equal(a, b) for a, b in zip(snapshot, method.target.parameters(),
                                                 strict=True))  # fmt: skip
    ctx.step = 1
    method.after_optimizer_step(ctx)
    assert not all(torch.equal(a, b) for a, b in zip(snapshot, method.target.parameters(),
                                                     strict=True))  # fmt: skip


def test_byol_views_are_asymmetric():
    method = _byol()
    augment = resolve(BYOL, {})["augment"]
    spec = method.views(augment)
    assert [p.blur_prob for p in spec.photometric] == [1.0, 0.1]
    assert [p.solarize_prob for p in spec.photometric] == [0.0, 0.2]


@pytest.mark.parametrize("name", ["simsiam+cld", "byol+cld"])
def test_cld_plugs_into_the_non_contrastive_bases(name):
    cls = get_method(name)
    extra = {"hidden_dim": 32, "pred_dim": 32} if name.startswith("byol") else {"pred_dim": 8}
    torch.manual_seed(0)
    method = cls(cls.Config(dim=16, cld_groups=3, **extra), build_backbone("resnet18"),
                 INFO).train()  # fmt: skip
    out = method.training_step(_batch(), step_context())
    assert out["loss"].item() == pytest.approx(
        (out["loss/similarity"] + 0.25 * out["loss/cld"]).item(), rel=1e-5)


def test_bad_settings_are_bad_input():
    with pytest.raises(BadInput, match="crop_pairs"):
        _simsiam(crop_pairs="random")
    with pytest.raises(BadInput, match="momentum_schedule"):
        _byol(momentum_schedule="linear")
