"""The linear probe: recipes and their schedules, training, accuracy, resume, frozen check."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sslkit.errors import BadInput
from sslkit.eval.common import accuracy, summary
from sslkit.eval.linear import (
    RECIPES,
    TrainState,
    augmented_batches,
    check_unchanged,
    feature_batches,
    frozen_state,
    new_classifier,
    resolve_recipe,
    train_probe,
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("epoch, expected", [(0, 5.0), (59, 5.0), (60, 0.5), (79, 0.5),
                                             (80, 0.05), (99, 0.05)])  # fmt: skip
def test_pcl_recipe_steps_at_60_and_80(epoch, expected):
    """PCL config: lr 5.0, x0.1 at epochs 60 and 80."""
    assert RECIPES["pcl"].lr_at(epoch) == pytest.approx(expected)


def test_named_recipes_match_the_spec():
    """MoCo v2 lr 30 step; AdCo lr 10 cosine (half at epoch 50); ConIC 75 cosine; SimSiam LARS."""
    assert RECIPES["mocov2"].lr_at(0) == 30.0 and RECIPES["mocov2"].lr_at(60) == pytest.approx(3.0)
    adco = RECIPES["adco"]
    assert adco.lr_at(0) == 10.0 and adco.lr_at(50) == pytest.approx(5.0)
    assert adco.lr_at(99) < 0.01
    assert RECIPES["conic"].lr == 75.0 and RECIPES["conic"].schedule == "cosine"
    lars = RECIPES["simsiam-lars"]
    assert (lars.optimizer, lars.batch_size, lars.epochs, lars.lr) == ("lars", 4096, 90, 1.6)
    assert all(r.weight_decay == 0.0 and r.momentum == 0.9 for r in RECIPES.values())


def test_resolve_recipe_overrides_and_rejects_unknown():
    """Custom values replace the named recipe's; unknown names are bad input."""
    recipe = resolve_recipe("mocov2", lr=1.0, epochs=3, milestones=(2,), batch_size=None)
    assert (recipe.lr, recipe.epochs, recipe.milestones, recipe.batch_size) == (1.0, 3, (2,), 256)
    with pytest.raises(BadInput, match="known are"):
        resolve_recipe("nope")


def test_accuracy_top1_top5_by_hand():
    """Row 0 right at rank 1, row 1 right at rank 3, row 2 wrong at rank 6 of 6 classes."""
    logits = torch.tensor([[9.0, 1, 2, 3, 4, 5], [1.0, 9, 8, 7, 0, 0], [6.0, 5, 4, 3, 2, 1]])
    result = accuracy(logits, torch.tensor([0, 3, 5]))
    assert result.top1 == pytest.approx(100 / 3) and result.top5 == pytest.approx(200 / 3)


def test_classifier_initialisation():
    """Weights ~ N(0, 0.01), bias 0."""
    layer = new_classifier(512, 100)
    assert layer.bias.abs().max() == 0
    assert 0.008 < layer.weight.std().item() < 0.012


def _separable(n: int = 600, dim: int = 16, classes: int = 4, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=gen) * 3
    labels = torch.arange(n) % classes
    return centres[labels] + 0.3 * torch.randn(n, dim, generator=gen), labels


def test_probe_on_linearly_separable_features_reaches_100_percent():
    """A separable toy problem is solved by the probe with the MoCo v2 recipe (short)."""
    all_x, all_y = _separable(1200)
    x, y, test_x, test_y = all_x[:600], all_y[:600], all_x[600:], all_y[600:]
    recipe = resolve_recipe("mocov2", epochs=5, batch_size=64, lr=0.05)
    classifier = new_classifier(x.shape[1], 4)
    state = train_probe(recipe, classifier, feature_batches(x, y, 64, seed=0), test_x, test_y)
    result = summary(state.history)
    assert result["top1"] == 100.0 and result["epochs"] == 5
    assert [row["epoch"] for row in state.history] == [1, 2, 3, 4, 5]
    assert state.history[-1]["loss"] < state.history[0]["loss"]


def test_resume_continues_exactly():
    """4 epochs straight equal 2 epochs, a save/load, and 2 more (same batches, optimiser)."""
    x, y = _separable()
    recipe = resolve_recipe("pcl", epochs=4, milestones=(3,), batch_size=100, lr=0.3)
    torch.manual_seed(0)
    straight = new_classifier(16, 4)
    start = {k: v.clone() for k, v in straight.state_dict().items()}
    full = train_probe(recipe, straight, feature_batches(x, y, 100, 7), x, y)
    saved: list[TrainState] = []
    first = new_classifier(16, 4)
    first.load_state_dict(start)
    train_probe(resolve_recipe("pcl", epochs=4, milestones=(3,), batch_size=100, lr=0.3),
                first, feature_batches(x, y, 100, 7), x, y,
                on_epoch_end=lambda s: saved.append(s) if s.epochs_done == 2 else None)  # fmt: skip
    resumed = new_classifier(16, 4)
    state = train_probe(recipe, resumed, feature_batches(x, y, 100, 7), x, y, resume=saved[0])
    assert state.epochs_done == 4
    for key, value in straight.state_dict().items():
        assert torch.allclose(value, resumed.state_dict()[key], atol=1e-6), key
    assert [r["top1"] for r in state.history] == [r["top1"] for r in full.history]


def test_feature_batches_cover_every_row_once_per_epoch_in_a_seeded_order():
    """Each epoch is a permutation; the order depends on (seed, epoch) only."""
    x, y = torch.arange(10.0)[:, None], torch.arange(10)
    batches = feature_batches(x, y, 3, seed=1)
    epoch0 = torch.cat([labels for _, labels in batches(0)])
    assert sorted(epoch0.tolist()) == list(range(10))
    assert torch.equal(epoch0, torch.cat([labels for _, labels in batches(0)]))
    assert not torch.equal(epoch0, torch.cat([labels for _, labels in batches(1)]))


def test_check_unchanged_detects_a_moved_bn_buffer():
    """The frozen-backbone check fails loudly when a running statistic moved."""
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    before = frozen_state(net)
    check_unchanged(net, before)
    net.train()(torch.randn(2, 3, 8, 8))
    with pytest.raises(RuntimeError, match="running_mean"):
        check_unchanged(net, before)


def test_augmented_batches_keep_an_eval_mode_backbone_frozen():
    """Crops go through the backbone in eval mode: BN statistics stay bit-identical."""
    from sslkit.data.specs import load_split

    dataset = load_split("digits@100", "train")
    backbone = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.AdaptiveAvgPool2d(1),
                             nn.Flatten()).eval()  # fmt: skip
    before = frozen_state(backbone)
    batches = augmented_batches(backbone, dataset, 16, dataset.info.mean, dataset.info.std,
                                32, seed=0, device=torch.device("cpu"))  # fmt: skip
    seen = [(features.shape, labels.shape) for features, labels in batches(0)]
    assert seen == [((32, 4), (32,))] * 3
    check_unchanged(backbone, before)
    first = next(iter(batches(0)))[0]
    assert torch.equal(first, next(iter(batches(0)))[0])  # seeded per epoch
