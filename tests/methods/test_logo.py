"""LoGo: regressor objective, the three-step update and multi-crop hosts."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from sslkit.data.base import DataInfo
from sslkit.errors import BadInput
from sslkit.methods.base import Batch
from sslkit.methods.logo import LocalSimilarityRegressor, local_to_local_loss, regressor_loss
from sslkit.methods.moco import MoCo
from sslkit.methods.multicrop import crop_pairs
from sslkit.methods.registry import get_method
from sslkit.models.backbones import build_backbone
from sslkit.nn.losses import info_nce
from tests.conftest import step_context

INFO = DataInfo("toy", 10, 32, 3, (0.5,) * 3, (0.5,) * 3, num_samples=64)
LOCALS = [[0.5, [0.08, 0.6]], [0.5, [0.08, 0.6]]]


class ZeroRegressor(torch.nn.Module):
    """Outputs 0 for every pair and remembers what it was shown."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, first, second):
        self.seen.append((first, second))
        return torch.zeros(len(first), 1)


def test_regressor_scores_pairs_with_one_number_each():
    regressor = LocalSimilarityRegressor(8, hidden_dim=16)
    out = regressor(torch.randn(5, 8), torch.randn(5, 8))
    assert out.shape == (5, 1)
    assert local_to_local_loss(regressor, torch.randn(5, 8), torch.randn(5, 8)).item() >= 0


def test_regressor_objective_at_a_zero_regressor_is_two_ln_two():
    zero = ZeroRegressor()
    z1, z2 = torch.randn(4, 3), torch.randn(4, 3)
    noise = torch.zeros(4, 3)
    assert regressor_loss(zero, z1, z2, noise, noise).item() == pytest.approx(2 * math.log(2))


def test_positive_pairs_share_the_index_and_negatives_pair_i_with_b_minus_one_minus_i():
    zero = ZeroRegressor()
    z1, z2 = torch.arange(4.0)[:, None], 10 + torch.arange(4.0)[:, None]
    noise_a, noise_b = torch.full((4, 1), 0.5), torch.full((4, 1), -0.5)
    regressor_loss(zero, z1, z2, noise_a, noise_b)
    (p12a, p12b), (p21a, p21b), (n12a, n12b), (n21a, n21b) = zero.seen
    torch.testing.assert_close(p12a, z1 + 0.5)
    torch.testing.assert_close(p12b, z2 - 0.5)
    torch.testing.assert_close(p21a, z2 + 0.5)
    torch.testing.assert_close(n12a, z1)
    torch.testing.assert_close(n12b, torch.tensor([[13.0], [12.0], [11.0], [10.0]]))
    torch.testing.assert_close(n21b, torch.tensor([[3.0], [2.0], [1.0], [0.0]]))
    assert not any(t.requires_grad for pair in zero.seen for t in pair)


def _method(name="moco+logo", **values):
    cls = get_method(name)
    base = ({"dim": 16, "queue_size": 64, "momentum": 0.9} if name.startswith("moco")
            else {"dim": 16, "pred_dim": 8})  # fmt: skip
    torch.manual_seed(0)
    config = cls.Config(**{**base, "local_crops": LOCALS, **values})
    return cls(config, build_backbone("resnet18"), INFO).train()


def _batch(size=8, seed=0):
    generator = torch.Generator().manual_seed(seed)
    views = [torch.randn(size, 3, 32, 32, generator=generator) for _ in range(2)]
    views += [torch.randn(size, 3, 16, 16, generator=generator) for _ in range(2)]
    return Batch(views, torch.arange(size))


def _ctx(lr=0.1):
    ctx = step_context()
    ctx.lr = lr
    return ctx


def test_logo_switches_its_host_to_two_global_and_two_local_crops():
    method = _method()
    assert method.config.multi_crop and method.local_views() == 2
    assert get_method("moco+logo").default_augment["crop_scale"] == [0.4, 1.0]
    with pytest.raises(BadInput, match="multi_crop"):
        _method(multi_crop=False)


def test_step_a_changes_only_the_regressor():
    method = _method(logo_clip_ratio=0.0, logo_l2l_weight_decay=0.0, logo_momentum_updates=1)
    host_before = {n: p.clone() for n, p in method.named_parameters()
                   if not n.startswith("addons.")}  # fmt: skip
    regressor_before = [p.clone() for p in method.addons["logo"].regressor.parameters()]
    logged = method.inner_step(_batch(), _ctx())
    assert {"loss/regressor", "loss/l2l"} <= set(logged)
    assert any(not torch.equal(a, b) for a, b in
               zip(regressor_before, method.addons["logo"].regressor.parameters(),
                   strict=True))  # fmt: skip
    # clip ratio 0 (and G_prev 0): step B only applies weight decay, here 0: no change
    for name, param in method.named_parameters():
        if name in host_before:
            assert torch.equal(param, host_before[name]), name


def test_step_b_moves_the_encoder_within_the_clip_and_never_the_key_encoder():
    method = _method(logo_momentum_updates=1)
    logo = method.addons["logo"]
    logo.previous_grad_norm = 1.0
    target_before = [p.clone() for p in method.target.parameters()]
    online_before = [p.clone() for p in method.online.parameters()]
    logo.inner_step(method, _batch(), _ctx(lr=1.0))
    after = list(method.online.parameters())
    moved = torch.sqrt(sum(((a - b) ** 2).sum()
                           for a, b in zip(online_before, after, strict=True)))  # fmt: skip
    # one SGD step from a fresh momentum buffer: |Δθ| <= lr·(|clipped g| + wd·|θ|)
    theta = torch.sqrt(sum((p ** 2).sum() for p in online_before))
    assert 0 < moved.item() <= 1.0 * (0.015 * 1.0 + 1e-4 * theta.item()) + 1e-6
    for before, after in zip(target_before, method.target.parameters(), strict=True):
        assert torch.equal(before, after)  # momentum_updates=1: only the main step moves it


def test_main_step_is_the_mean_of_six_infonce_terms_and_queues_the_global_keys():
    method = _method()
    ptr = int(method.queue.ptr) if hasattr(method.queue, "ptr") else None
    queue_before = method.queue.keys.clone()
    batch = _batch()
    out = method.training_step(batch, _ctx())
    # recompute with the same (already updated) key encoder and the queue before the push
    with torch.no_grad():
        queries = [F.normalize(method.online(v), dim=1) for v in batch.views]
        keys = [F.normalize(method.target(v), dim=1) for v in batch.views[:2]]
    pairs = crop_pairs(4)
    assert pairs == [(0, 1), (1, 0), (2, 0), (2, 1), (3, 0), (3, 1)]
    expected = sum(info_nce(queries[q], keys[t], queue_before, 0.2) for q, t in pairs) / 6
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-4)
    pushed = method.queue.keys[:16]
    torch.testing.assert_close(pushed, torch.cat(keys), rtol=1e-4, atol=1e-5)
    if ptr is not None:
        assert int(method.queue.ptr) == (ptr + 16) % 64


def test_without_l2l_the_loss_is_exactly_the_multi_crop_moco_loss():
    logo = _method(logo_l2l=False)
    torch.manual_seed(0)
    config = MoCo.Config(dim=16, queue_size=64, momentum=0.9, multi_crop=True,
                         local_crops=LOCALS)  # fmt: skip
    plain = MoCo(config, build_backbone("resnet18"), INFO).train()
    batch = _batch()
    assert logo.inner_step(batch, _ctx()) == {}
    a = logo.training_step(batch, _ctx())["loss"]
    b = plain.training_step(batch, _ctx())["loss"]
    assert a.item() == b.item()


def test_identical_crops_and_an_orthogonal_queue_give_the_single_pair_value():
    method = _method()
    x = torch.randn(4, 3, 32, 32)
    method.target.load_state_dict(method.online.state_dict())
    method.config.momentum = 1.0  # keys from the same weights as the queries
    method.online.eval()
    method.target.eval()
    queue = torch.zeros(64, 16)
    method.queue.keys.copy_(queue)
    out = method.training_step(Batch([x, x, x, x], torch.arange(4)), _ctx())
    q = F.normalize(method.online(x), dim=1)
    single = info_nce(q, q, queue, 0.2)
    assert out["loss"].item() == pytest.approx(single.item(), rel=1e-4)


def test_previous_gradient_norm_is_recorded_and_reset_every_epoch():
    method = _method()
    out = method.training_step(_batch(), _ctx())
    out["loss"].backward()
    method.after_optimizer_step(_ctx())
    grads = [p.grad for n, p in method.named_parameters()
             if p.grad is not None and not n.startswith("addons.")]  # fmt: skip
    expected = torch.sqrt(sum((g ** 2).sum() for g in grads)).item()
    assert method.addons["logo"].previous_grad_norm == pytest.approx(expected, rel=1e-5)
    method.addons["logo"].on_epoch_start(method, None)
    assert method.addons["logo"].previous_grad_norm == 0.0


def test_joint_mode_adds_weight_times_l2l_and_trains_the_regressor():
    method = _method("simsiam+logo", logo_mode="joint", logo_weight=0.5)
    before = [p.clone() for p in method.addons["logo"].regressor.parameters()]
    out = method.training_step(_batch(), _ctx())
    assert out["loss"].item() == pytest.approx(
        (out["loss/similarity"] + 0.5 * out["loss/l2l"]).item(), rel=1e-5)
    assert any(not torch.equal(a, b) for a, b in
               zip(before, method.addons["logo"].regressor.parameters(), strict=True))  # fmt: skip


def test_the_regressor_is_outside_the_main_optimiser_and_ddp():
    method = _method()
    main = {id(p) for group in method.param_groups() for p in group["params"]}
    regressor = list(method.addons["logo"].regressor.parameters())
    assert not main & {id(p) for p in regressor}
    ignored = method.ddp_ignored_parameters()
    assert ignored and all(name.startswith("addons.logo.regressor.") for name in ignored)


def test_optimiser_states_survive_a_checkpoint_round_trip():
    a = _method()
    a.addons["logo"].previous_grad_norm = 2.0
    a.inner_step(_batch(), _ctx())
    b = _method()
    b.load_state_dict(a.state_dict())
    assert b.addons["logo"].previous_grad_norm == 2.0
    b.inner_step(_batch(seed=1), _ctx())
    a.inner_step(_batch(seed=1), _ctx())
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa, pb)
