"""MoCo v2 on a tiny batch: loss, gradients, queue, momentum, symmetric loss, shuffle-BN."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from sslkit.data.base import DataInfo
from sslkit.methods.base import Batch, StepContext
from sslkit.methods.moco import MoCo
from sslkit.models.backbones import build_backbone
from sslkit.nn.losses import info_nce
from sslkit.nn.split_bn import SplitBatchNorm2d
from tests.conftest import step_context

BATCH = 4
SIDE = 16  # the ImageNet stem reaches 1x1 in layer3: the cheapest valid input
INFO = DataInfo("toy", num_classes=2, image_size=SIDE, channels=3, mean=(0.5,) * 3,
                std=(0.5,) * 3)  # fmt: skip


pytestmark = pytest.mark.usefixtures("one_thread")


def _method(**overrides) -> MoCo:
    torch.manual_seed(0)
    config = MoCo.Config(dim=8, queue_size=16, momentum=0.9, temperature=0.2, **overrides)
    return MoCo(config, build_backbone("resnet18"), INFO).train()


def _ctx(world_size: int = 1, seed: int = 0) -> StepContext:
    return step_context(seed, world_size)


def _batch(same_views: bool = False) -> Batch:
    gen = torch.Generator().manual_seed(1)
    first = torch.randn(BATCH, 3, SIDE, SIDE, generator=gen)
    second = first.clone() if same_views else torch.randn(BATCH, 3, SIDE, SIDE, generator=gen)
    return Batch(views=[first, second], indices=torch.tensor([10, 11, 12, 13]))


@pytest.fixture(scope="module")
def stepped():
    """A method before and after one asymmetric training step, and the step's output."""
    method = _method()
    before = copy.deepcopy(method)
    batch = _batch()
    out = method.training_step(batch, _ctx())
    out["loss"].backward()
    return before, method, batch, out


def test_loss_is_finite_and_named(stepped):
    """The step returns a finite scalar 'loss' and its detached 'loss/instance' copy."""
    _, _, _, out = stepped
    assert set(out) == {"loss", "loss/instance"}
    assert out["loss"].ndim == 0 and math.isfinite(out["loss"].item())
    assert out["loss/instance"].grad_fn is None
    # near ln(1+K) for a freshly initialised network and a random queue
    assert abs(out["loss"].item() - math.log(1 + 16)) < 3


def test_only_the_online_encoder_gets_gradients(stepped):
    """After backward the target encoder and the queue have no gradient; the online one has."""
    _, method, _, _ = stepped
    assert all(p.grad is None and not p.requires_grad for p in method.target.parameters())
    assert method.queue.buffer.grad is None and not method.queue.buffer.requires_grad
    assert method.online.head[-1].weight.grad is not None
    assert method.online.backbone.conv1.weight.grad is not None


def test_queue_pointer_ids_and_keys(stepped):
    """The queue advanced by the batch size and holds the ids and the target's keys."""
    _, method, batch, _ = stepped
    assert int(method.queue.pointer) == BATCH
    assert method.queue.ids[:BATCH].tolist() == [10, 11, 12, 13]
    assert (method.queue.ids[BATCH:] == -1).all()
    with torch.no_grad():
        keys = F.normalize(method.target(batch.views[1]), dim=1)
    assert torch.allclose(method.queue.buffer[:BATCH], keys, atol=1e-5)


def test_loss_uses_queue_before_push_and_updated_target(stepped):
    """The loss is InfoNCE against the pre-step queue, with keys of the EMA-updated target."""
    before, method, batch, out = stepped
    m = before.config.momentum
    for t0, o0, t1 in zip(before.target.parameters(), before.online.parameters(),
                          method.target.parameters(), strict=True):  # fmt: skip
        assert torch.allclose(t1, m * t0 + (1 - m) * o0, atol=1e-6)
    reference = copy.deepcopy(before)
    with torch.no_grad():
        for t, o in zip(reference.target.parameters(), reference.online.parameters(),
                        strict=True):  # fmt: skip
            t.mul_(m).add_(o, alpha=1 - m)
        query = F.normalize(reference.online(batch.views[0]), dim=1)
        key = F.normalize(reference.target(batch.views[1]), dim=1)
        expected = info_nce(query, key, before.queue.buffer, before.config.temperature)
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_symmetric_with_identical_views_is_twice_asymmetric():
    """With view 1 == view 2 the symmetric loss is exactly 2x the one-sided loss."""
    symmetric = _method(symmetric=True)
    asymmetric = copy.deepcopy(symmetric)
    asymmetric.config.symmetric = False
    assert symmetric.config.symmetric  # the deep copy owns its config
    batch = _batch(same_views=True)
    loss_sym = symmetric.training_step(batch, _ctx())["loss"]
    loss_asym = asymmetric.training_step(batch, _ctx())["loss"]
    assert loss_sym.item() == pytest.approx(2 * loss_asym.item(), rel=1e-5)
    assert int(symmetric.queue.pointer) == 2 * BATCH  # 2B keys queued
    assert symmetric.queue.ids[: 2 * BATCH].tolist() == [10, 11, 12, 13] * 2
    assert int(asymmetric.queue.pointer) == BATCH


def test_symmetric_pairs_each_query_with_the_other_views_key():
    """Distinct views: loss = InfoNCE(q1, k2) + InfoNCE(q2, k1); keys k2 then k1 are queued."""
    method = _method(symmetric=True)
    reference = copy.deepcopy(method)
    batch = _batch()
    loss = method.training_step(batch, _ctx())["loss"]
    m, t = reference.config.momentum, reference.config.temperature
    negatives = reference.queue.buffer.clone()
    with torch.no_grad():
        for target, online in zip(reference.target.parameters(), reference.online.parameters(),
                                  strict=True):  # fmt: skip
            target.mul_(m).add_(online, alpha=1 - m)
        q1, q2 = (F.normalize(reference.online(v), dim=1) for v in batch.views)
        k1, k2 = (F.normalize(reference.target(v), dim=1) for v in batch.views)
    expected = info_nce(q1, k2, negatives, t) + info_nce(q2, k1, negatives, t)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert torch.allclose(method.queue.buffer[: 2 * BATCH], torch.cat([k2, k1]), atol=1e-5)


def test_keys_without_shuffle_flag_on_one_process():
    """On one process shuffle_bn=True and shuffle_bn=False give identical keys."""
    with_shuffle = _method(shuffle_bn=True)
    without = copy.deepcopy(with_shuffle)
    without.config.shuffle_bn = False
    images = _batch().views[1]
    assert torch.equal(with_shuffle.keys(images, _ctx()), without.keys(images, _ctx()))


def test_shuffle_unshuffle_round_trip_on_one_process():
    """Forcing the shuffle-BN path (no process group) returns keys in the original order."""
    method = _method(shuffle_bn=True)
    images = _batch().views[1]
    plain = method.keys(images, _ctx(world_size=1))
    ctx = _ctx(world_size=2, seed=5)  # 'distributed' in the DistEnv, but one real process
    state = ctx.generator.get_state()
    shuffled = method.keys(images, ctx)
    assert not torch.equal(ctx.generator.get_state(), state)  # a permutation was drawn
    assert torch.allclose(shuffled, plain, atol=1e-5)
    assert not shuffled.requires_grad


def test_embed_is_normalised_head_output():
    """embed() gives unit-norm dim-d rows of the query encoder."""
    method = _method().eval()
    with torch.no_grad():
        embedding = method.embed(_batch().views[0])
    assert embedding.shape == (BATCH, 8)
    assert torch.allclose(embedding.norm(dim=1), torch.ones(BATCH), atol=1e-5)
    assert method.encoder() is method.online.backbone


def test_bn_splits_converts_both_encoders():
    """bn_splits > 1 puts SplitBatchNorm2d in the online and the target backbone."""
    method = _method(bn_splits=2)
    for encoder in (method.online, method.target):
        norms = [m for m in encoder.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        assert norms and all(isinstance(m, SplitBatchNorm2d) for m in norms)


def test_v1_linear_head():
    """mlp=False gives a single Linear head of the backbone width."""
    head = _method(mlp=False).online.head
    assert isinstance(head, torch.nn.Linear) and head.in_features == 512 and head.out_features == 8
