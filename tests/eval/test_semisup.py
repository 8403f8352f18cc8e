"""Semi-supervised fine-tuning: recipes, label subsets, training, resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from sslkit.data.specs import load_split
from sslkit.errors import BadInput
from sslkit.eval.semisup import (
    RECIPES,
    Classifier,
    FineTuneData,
    balanced_subset,
    fine_tune,
    make_optimizer,
    resolve_recipe,
    subset_from_file,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_recipes_match_the_spec():
    """HCSC, PCL and CLD settings, schedules at the listed epochs."""
    hcsc, pcl, cld = RECIPES["hcsc"], RECIPES["pcl"], RECIPES["cld"]
    assert (hcsc.epochs, hcsc.backbone_lr, hcsc.head_lr, hcsc.weight_decay) == (70, 0.005, 0.02, 0)
    assert [hcsc.factor_at(e) for e in (29, 30, 59, 60)] == pytest.approx([1, 0.1, 0.1, 0.01])
    assert (pcl.epochs, pcl.backbone_lr, pcl.weight_decay) == (20, 0.01, 5e-4)
    assert pcl.head_lr_for(0.01) == 1.0 and pcl.head_lr_for(0.1) == 0.1
    assert [pcl.factor_at(e) for e in (11, 12, 16)] == pytest.approx([1, 0.2, 0.04])
    assert cld.head_lr == 100 * cld.backbone_lr and cld.weight_decay == 1e-4
    assert cld.factor_at(12) == pytest.approx(0.2)
    with pytest.raises(BadInput, match="known are"):
        resolve_recipe("simclr")


def test_balanced_subset_is_balanced_and_reproducible():
    """round(f x n_c) per class (at least one), same draw for the same seed."""
    labels = np.repeat(np.arange(5), [100, 50, 10, 3, 200])
    chosen = balanced_subset(labels, 0.1, seed=3)
    counts = np.bincount(labels[chosen], minlength=5)
    assert counts.tolist() == [10, 5, 1, 1, 20]
    assert np.array_equal(chosen, balanced_subset(labels, 0.1, seed=3))
    assert not np.array_equal(chosen, balanced_subset(labels, 0.1, seed=4))
    assert np.all(np.diff(chosen) > 0)
    with pytest.raises(BadInput, match="fraction"):
        balanced_subset(labels, 1.5, seed=0)


def test_subset_file_by_index_and_by_name(tmp_path):
    """Integer lines index the split; names match image files (1percent.txt format)."""
    dataset = load_split("digits", "train")
    (tmp_path / "idx.txt").write_text("3\n1\n\n3\n")
    assert subset_from_file(dataset, tmp_path / "idx.txt").tolist() == [1, 3]
    (tmp_path / "names.txt").write_text("n01_1.JPEG\n")
    with pytest.raises(BadInput, match="holds no files"):
        subset_from_file(dataset, tmp_path / "names.txt")

    class Files:
        paths = ["/d/a/n01_1.JPEG", "/d/b/n02_7.JPEG", "/d/b/n02_9.JPEG"]
        spec = "imagefolder:/d"

        def __len__(self) -> int:
            return 3

    (tmp_path / "names.txt").write_text("n02_9.JPEG\nn01_1.JPEG\n")
    assert subset_from_file(Files(), tmp_path / "names.txt").tolist() == [0, 2]
    (tmp_path / "bad.txt").write_text("n03_1.JPEG\n")
    with pytest.raises(BadInput, match="not in"):
        subset_from_file(Files(), tmp_path / "bad.txt")


class _TinyBackbone(nn.Sequential):
    feature_dim = 8

    def __init__(self) -> None:
        super().__init__(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten())  # fmt: skip


def _data():
    train = load_split("digits@200", "train")
    test = load_split("digits", "test")
    return FineTuneData(train, test, 16, train.info.mean, train.info.std)


def test_optimizer_groups_use_trunk_and_head_lrs():
    """Two parameter groups: the backbone at backbone_lr, the fc head at the head lr."""
    model = Classifier(_TinyBackbone(), 10)
    optimizer = make_optimizer(RECIPES["pcl"], model, fraction=0.01)
    assert [g["lr"] for g in optimizer.param_groups] == [0.01, 1.0]
    assert optimizer.param_groups[1]["params"] == list(model.fc.parameters())


def test_fine_tuning_trains_bn_and_resumes_exactly():
    """The whole network trains (BN statistics move); 2+1 epochs resumed equal 3 straight."""
    recipe = resolve_recipe("cld", epochs=3, milestones=(2,), batch_size=50, head_lr=0.1)
    torch.manual_seed(0)
    straight = Classifier(_TinyBackbone(), 10)
    start = {k: v.clone() for k, v in straight.state_dict().items()}
    full = fine_tune(recipe, straight, _data(), torch.device("cpu"), fraction=0.1)
    assert not torch.equal(straight.backbone[1].running_mean, start["backbone.1.running_mean"])
    assert [row["epoch"] for row in full.history] == [1, 2, 3]
    assert all("top1" in row for row in full.history)
    saved = []
    first = Classifier(_TinyBackbone(), 10)
    first.load_state_dict(start)
    fine_tune(recipe, first, _data(), torch.device("cpu"), fraction=0.1,
              on_epoch_end=lambda s: saved.append(s) if s.epochs_done == 2 else None)  # fmt: skip
    resumed = Classifier(_TinyBackbone(), 10)
    state = fine_tune(recipe, resumed, _data(), torch.device("cpu"), fraction=0.1,
                      resume=saved[0])  # fmt: skip
    for key, value in straight.state_dict().items():
        assert torch.allclose(value.float(), resumed.state_dict()[key].float(), atol=1e-5), key
    assert state.history == full.history


def test_eval_every_tests_only_the_chosen_epochs_and_the_last():
    """--eval-every 2 over 3 epochs tests after epochs 2 and 3."""
    recipe = resolve_recipe("pcl", epochs=3, batch_size=100)
    state = fine_tune(recipe, Classifier(_TinyBackbone(), 10), _data(), torch.device("cpu"),
                      fraction=0.1, eval_every=2)  # fmt: skip
    assert ["top1" in row for row in state.history] == [False, True, True]
