"""Transfer on frozen features: multinomial logistic regression with a validated L2 cost.

The LoGo / SimCLR transfer protocol (evaluation.md §10): features of the frozen encoder
(global-pooled backbone, evaluation view), standardised with the training set's
statistics, an L2-regularised multinomial logistic regression fitted by L-BFGS for each
cost on a grid, the cost chosen on a validation split (given, or a class-balanced 20 %
held out of the training images), then refitted on train + validation and scored on the
test split: top-1 and mean per-class accuracy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sslkit.errors import BadInput

DEFAULT_COSTS = tuple(float(c) for c in np.logspace(-3, 3, 7))


@dataclass
class TransferScores:
    """Accuracies in % (top-1 and the mean over classes of per-class accuracy)."""

    top1: float
    mean_per_class: float


def scores(predictions: np.ndarray, labels: np.ndarray) -> TransferScores:
    """Top-1 and mean per-class accuracy (classes absent from ``labels`` are skipped)."""
    correct = predictions == labels
    per_class = [correct[labels == c].mean() for c in np.unique(labels)]
    return TransferScores(100.0 * float(correct.mean()), 100.0 * float(np.mean(per_class)))


def validation_split(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of a class-balanced held-out share (at least one image per class kept
    on each side when a class has two or more)."""
    rng = np.random.default_rng(seed)
    held = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        count = min(len(members) - 1, max(1, int(round(fraction * len(members)))))
        held[members[:count]] = True
    return held


def fit_logistic(features: np.ndarray, labels: np.ndarray, cost: float, max_iter: int):
    """An L2 multinomial logistic regression (L-BFGS) on standardised features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    classifier = LogisticRegression(C=cost, max_iter=max_iter, solver="lbfgs")
    model = make_pipeline(StandardScaler(), classifier)
    return model.fit(features, labels)


def logistic_transfer(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    val_x: np.ndarray | None = None,
    val_y: np.ndarray | None = None,
    costs: Sequence[float] = DEFAULT_COSTS,
    metric: str = "top1",
    max_iter: int = 5000,
    seed: int = 0,
) -> dict:
    """Choose the cost on the validation split by ``metric``, refit on train + val, test."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    if metric not in ("top1", "mean_per_class"):
        raise BadInput(f"unknown metric '{metric}': use top1 or mean_per_class")
    if not costs or min(costs) <= 0:
        raise BadInput("costs must be positive numbers, e.g. 0.01,0.1,1,10")
    if val_x is None:
        held = validation_split(train_y, 0.2, seed)
        fit_x, fit_y, val_x, val_y = train_x[~held], train_y[~held], train_x[held], train_y[held]
    else:
        fit_x, fit_y = train_x, train_y
    if len(np.unique(fit_y)) < 2:
        raise BadInput("transfer needs at least two classes with training images")
    validation = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for cost in costs:
            model = fit_logistic(fit_x, fit_y, cost, max_iter)
            validation[cost] = getattr(scores(model.predict(val_x), val_y), metric)
        best = max(costs, key=lambda c: (validation[c], -c))  # ties: stronger regularisation
        model = fit_logistic(np.concatenate([fit_x, val_x]), np.concatenate([fit_y, val_y]),
                             best, max_iter)  # fmt: skip
    test = scores(model.predict(test_x), test_y)
    return {"protocol": "lbfgs-logistic", "metric": metric, "cost": best,
            "validation": {str(c): v for c, v in validation.items()},
            "top1": test.top1, "mean_per_class": test.mean_per_class,
            "train_size": int(len(train_y)), "test_size": int(len(test_y))}  # fmt: skip
