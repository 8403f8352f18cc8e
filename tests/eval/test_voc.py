"""VOC07 metrics (VOC all-points AP, HCSC's sample-wise AP) and the linear-layer protocols."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sslkit.eval.linear import resolve_recipe
from sslkit.eval.voc import (
    class_average_precision,
    hcsc_lr,
    hcsc_train_view,
    sample_average_precision,
    train_standard,
    voc_average_precision,
)


def _script_ap(targets: np.ndarray, scores: np.ndarray) -> float:
    """An independent loop version of the VOC all-points AP (as in eval_svm_voc.py)."""
    order = np.argsort(-scores, kind="stable")
    hits = (targets[order] > 0).astype(float)
    tp, fp = np.cumsum(hits), np.cumsum(1 - hits)
    recall = np.concatenate([[0.0], tp / hits.sum(), [1.0]])
    precision = np.concatenate([[0.0], tp / (tp + fp), [0.0]])
    for i in range(len(precision) - 2, -1, -1):
        precision[i] = max(precision[i], precision[i + 1])
    return float(sum((recall[i] - recall[i - 1]) * precision[i]
                     for i in range(1, len(recall)) if recall[i] != recall[i - 1]))  # fmt: skip


def test_ap_by_hand_and_why_it_is_not_sklearns():
    """[neg, pos, pos]: VOC interpolates precision to 2/3 at both hits (AP 2/3) where
    scikit-learn's non-interpolated AP is 0.5 x 1/2 + 0.5 x 2/3 = 0.583."""
    from sklearn.metrics import average_precision_score

    scores, targets = np.array([3.0, 2.0, 1.0]), np.array([-1, 1, 1])
    assert class_average_precision(scores, targets) == pytest.approx(2 / 3)
    assert average_precision_score(targets > 0, scores) == pytest.approx(7 / 12)
    # precision already non-increasing at the hits: both agree (1 x 0.5 + 2/3 x 0.5)
    targets = np.array([1, -1, 1])
    assert class_average_precision(scores, targets) == pytest.approx(5 / 6)
    assert average_precision_score(targets > 0, scores) == pytest.approx(5 / 6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ap_matches_sklearns_curve_with_the_voc_envelope(seed):
    """Random untied scores: AP = sum of Δrecall x (max precision at >= recall) over
    scikit-learn's precision-recall curve, = the script's loop, >= sklearn's AP."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    rng = np.random.default_rng(seed)
    scores = rng.normal(size=(200, 4))
    targets = np.where(rng.random((200, 4)) < 0.3, 1, -1)
    result = voc_average_precision(scores, targets)
    for c in range(4):
        precision, recall, _ = precision_recall_curve(targets[:, c] > 0, scores[:, c])
        precision, recall = precision[::-1], recall[::-1]  # recall ascending
        envelope = np.maximum.accumulate(precision[::-1])[::-1]
        expected = float(np.sum(np.diff(recall) * envelope[1:]))
        assert result.per_class[c] == pytest.approx(100 * expected)
        assert result.per_class[c] == pytest.approx(100 * _script_ap(targets[:, c], scores[:, c]))
        plain = average_precision_score(targets[:, c] > 0, scores[:, c])
        assert result.per_class[c] >= 100 * plain - 1e-9
    assert result.mean == pytest.approx(np.mean(result.per_class))


def test_difficult_entries_are_ignored_and_empty_classes_skipped():
    """Entries with target 0 change nothing, wherever they rank; a class without a
    positive is None and left out of the mean."""
    rng = np.random.default_rng(5)
    scores, targets = rng.normal(size=(50, 1)), np.where(rng.random((50, 1)) < 0.4, 1, -1)
    plain = voc_average_precision(scores, targets).per_class[0]
    with_difficult = voc_average_precision(np.vstack([scores, [[99.0], [-99.0], [0.1]]]),
                                           np.vstack([targets, [[0], [0], [0]]]))  # fmt: skip
    assert with_difficult.per_class[0] == pytest.approx(plain)
    as_negatives = voc_average_precision(np.vstack([scores, [[99.0]]]),
                                         np.vstack([targets, [[-1]]]))  # fmt: skip
    assert as_negatives.per_class[0] < plain
    two = voc_average_precision(np.hstack([scores, scores]),
                                np.hstack([targets, np.full_like(targets, -1)]))  # fmt: skip
    assert two.per_class[1] is None and two.mean == pytest.approx(plain)
    assert math.isnan(voc_average_precision(scores, np.full_like(targets, -1)).mean)


def test_sample_wise_ap_is_hcscs_per_image_mean():
    """Mean over images of sklearn's AP across classes; an image without a positive is 0."""
    scores = np.array([[0.9, 0.1, 0.5], [0.2, 0.8, 0.1], [0.3, 0.2, 0.1]])
    positives = np.array([[0, 0, 1], [1, 0, 0], [0, 0, 0]])
    # image 0: its positive ranks 2nd -> 1/2; image 1: 2nd -> 1/2; image 2: none -> 0
    assert sample_average_precision(scores, positives) == pytest.approx(100 * (0.5 + 0.5) / 3)
    assert sample_average_precision(scores[:2], positives[:2]) == pytest.approx(50.0)


def test_hcsc_lr_restarts_every_24_epochs():
    """CosineAnnealingLR(T_max=12) stepped before each epoch: epoch 0 already decayed,
    0 at epoch 11, back to the base lr at epoch 23 (torch's scheduler agrees)."""
    assert hcsc_lr(0.05, 0) == pytest.approx(0.05 * (1 + math.cos(math.pi / 12)) / 2)
    assert hcsc_lr(0.05, 11) == pytest.approx(0.0, abs=1e-12)
    assert hcsc_lr(0.05, 23) == pytest.approx(0.05)
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.05)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, 12, eta_min=0)
    for epoch in range(40):
        optimizer.step()  # keeps torch from warning about the order
        scheduler.step()
        assert optimizer.param_groups[0]["lr"] == pytest.approx(hcsc_lr(0.05, epoch), abs=1e-9)


def test_hcsc_train_view_is_seeded_normalised_and_keeps_shape():
    """uint8 squares in, VOC-normalised floats out; the same generator seed, the same view."""
    images = torch.randint(0, 256, (4, 3, 20, 20), dtype=torch.uint8)
    first = hcsc_train_view(images, torch.Generator().manual_seed(3))
    again = hcsc_train_view(images, torch.Generator().manual_seed(3))
    other = hcsc_train_view(images, torch.Generator().manual_seed(4))
    assert first.shape == (4, 3, 20, 20) and first.dtype == torch.float32
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert -2.0 < float(first.min()) and float(first.max()) < 2.5


def _multilabel(n: int, seed: int):
    """Features = class centres of the present classes + noise; {1, -1} targets, 3 classes."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(9).normal(size=(3, 16)) * 3
    present = rng.random((n, 3)) < 0.4
    features = present.astype(np.float32) @ centres + rng.normal(size=(n, 16)) * 0.3
    return torch.from_numpy(features.astype(np.float32)), np.where(present, 1, -1)


def test_standard_protocol_learns_and_picks_the_best_val_epoch(one_thread):
    """Separable multi-label data: high test mAP; the best epoch is the best val epoch."""
    train_x, train_t = _multilabel(120, 1)
    val_x, val_t = _multilabel(60, 2)
    test_x, test_t = _multilabel(60, 3)
    recipe = resolve_recipe("voc07-hcsc", epochs=8, lr=0.01)
    result = train_standard(train_x, train_t, val_x, val_t, test_x, test_t, recipe, seed=0)
    with_positive = 100 * float((test_t == 1).any(axis=1).mean())  # the rest score 0
    assert result["map"] > 95 and with_positive - 5 < result["sample_map"] <= with_positive
    assert len(result["history"]) == 8 and result["final"]["epoch"] == 8
    best = max(result["history"], key=lambda row: (row["val_map"], row["epoch"]))
    assert result["best"] == {"epoch": best["epoch"], "val_map": best["val_map"]}
    lrs = [row["lr"] for row in result["history"]]
    assert lrs[0] == pytest.approx(0.01) and lrs == sorted(lrs, reverse=True)  # one cosine
    again = train_standard(train_x, train_t, val_x, val_t, test_x, test_t, recipe, seed=0)
    assert again["map"] == result["map"]
