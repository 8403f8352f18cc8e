"""Transfer protocol pieces: accuracies, validation split, validated logistic regression."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sslkit.errors import BadInput
from sslkit.eval.transfer import scores, validated_logistic, validation_split


def test_scores_top1_and_mean_per_class_by_hand():
    """Class 0: 3 of 4 right, class 1: 0 of 1: top-1 60 %, mean per-class 37.5 %."""
    labels = np.array([0, 0, 0, 0, 1])
    result = scores(np.array([0, 0, 0, 1, 0]), labels)
    assert result.top1 == pytest.approx(60.0) and result.mean_per_class == pytest.approx(37.5)


def test_validation_split_is_balanced_seeded_and_keeps_every_class():
    """20 % per class held out, never a whole class; the same seed gives the same split."""
    labels = np.repeat(np.arange(3), [50, 10, 2])
    held = validation_split(labels, 0.2, seed=0)
    assert np.bincount(labels[held], minlength=3).tolist() == [10, 2, 1]
    assert np.bincount(labels[~held], minlength=3).min() >= 1
    assert np.array_equal(held, validation_split(labels, 0.2, seed=0))


def _blobs(n: int, seed: int, dim: int = 10, classes: int = 3):
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(100).normal(size=(classes, dim)) * 3
    labels = np.arange(n) % classes
    return (centres[labels] + rng.normal(size=(n, dim))).astype(np.float32), labels


def test_validated_logistic_solves_separable_data_and_reports_the_validation():
    """Well-separated blobs: ~100 % test accuracy; every cost validated; the best refitted."""
    train_x, train_y = _blobs(300, 1)
    test_x, test_y = _blobs(150, 2)
    result, predictions = validated_logistic(train_x, train_y, test_x, test_y,
                                             costs=(0.001, 1.0, 100.0))
    assert result["top1"] > 97 and result["mean_per_class"] > 97
    assert set(result["validation"]) == {"0.001", "1.0", "100.0"}
    assert result["cost"] in (0.001, 1.0, 100.0)
    assert result["validation"][str(result["cost"])] == max(result["validation"].values())
    assert (predictions == test_y).mean() * 100 == pytest.approx(result["top1"])
    explicit, _ = validated_logistic(train_x, train_y, test_x, test_y, test_x, test_y,
                                     costs=(1.0,), metric="mean_per_class")  # fmt: skip
    assert explicit["cost"] == 1.0 and explicit["metric"] == "mean_per_class"


def test_validated_logistic_rejects_bad_costs_and_single_classes():
    """Non-positive costs and one-class training sets are bad input."""
    x, y = _blobs(30, 0)
    with pytest.raises(BadInput, match="costs"):
        validated_logistic(x, y, x, y, costs=(0.0,))
    with pytest.raises(BadInput, match="two classes"):
        validated_logistic(x, np.zeros(30, dtype=np.int64), x, y)


@pytest.mark.parametrize("cost", [0.01, 1.0])
def test_the_lbfgs_fit_is_scikit_learns_logistic_regression(cost):
    """Same objective as LogisticRegression(C) on standardised features: same optimum."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from sslkit.eval.transfer import fit_logistic

    x, y = _blobs(240, 3, dim=6, classes=4)
    x = x + np.random.default_rng(4).normal(size=x.shape).astype(np.float32) * 4  # overlap
    ours = fit_logistic(x, y, cost, 4, chunk=50)  # chunks: the objective is summed exactly
    scaled = StandardScaler().fit_transform(x)
    theirs = LogisticRegression(C=cost, max_iter=10000, tol=1e-10).fit(scaled, y)
    probabilities = torch.softmax(ours.logits(x), dim=1).numpy()
    assert np.abs(probabilities - theirs.predict_proba(scaled)).max() < 1e-3
