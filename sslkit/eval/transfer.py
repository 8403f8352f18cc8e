"""The validated linear probe on frozen features: logistic regression with a chosen L2 cost.

The LoGo / SimCLR transfer protocol, and ``sslkit linear``'s default: features of the
frozen encoder (global-pooled backbone, evaluation view), standardised with the training
set's statistics, an L2-regularised multinomial logistic regression fitted by L-BFGS for
each cost on a grid (1e-3 ... 1e3), the cost chosen on a validation split (given, or a
class-balanced 20 % held out of the training images), then refitted on train +
validation and scored on the test split: top-1, top-5 and mean per-class accuracy. No
learning rate to tune, and the strength is chosen on data the test never sees, so it is
right on small and large feature sets alike.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from sslkit.errors import BadInput
from sslkit.eval.common import accuracy

DEFAULT_COSTS = tuple(float(c) for c in np.logspace(-3, 3, 7))
CHUNK_ROWS = 65536  # rows per chunk of the L-BFGS objective (bounds the N x C logits)


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


@dataclass
class LogisticModel:
    """A fitted multinomial logistic regression on standardised features."""

    mean: torch.Tensor  # D, the training features' mean
    scale: torch.Tensor  # D, their standard deviation (1 where it is 0)
    weight: torch.Tensor  # C x D
    bias: torch.Tensor  # C
    iterations: int = 0

    @torch.no_grad()
    def logits(self, features, chunk: int = CHUNK_ROWS) -> torch.Tensor:
        """``N x C`` logits (on the model's device), computed in chunks of rows."""
        parts = []
        for start in range(0, len(features), chunk):
            parts.append(self._linear(_rows(features, start, chunk, self.weight.device)))
        return torch.cat(parts)

    def _linear(self, rows: torch.Tensor) -> torch.Tensor:
        return ((rows - self.mean) / self.scale) @ self.weight.t() + self.bias


def _rows(features, start: int, count: int, device) -> torch.Tensor:
    block = features[start : start + count]
    if isinstance(block, np.ndarray):
        block = torch.from_numpy(np.ascontiguousarray(block))
    return block.to(device=device, dtype=torch.float32)


def fit_logistic(features, labels, cost: float, num_classes: int, device="cpu", *,
                 max_iter: int = 1000, start: LogisticModel | None = None,
                 chunk: int = CHUNK_ROWS) -> LogisticModel:  # fmt: skip
    """An L2 multinomial logistic regression on standardised features, by full-batch L-BFGS.

    The objective is scikit-learn's ``LogisticRegression(C=cost)``: ``cost x sum of the
    cross-entropies + ||W||^2 / 2`` (bias not penalised), divided by ``cost x N`` so its
    scale does not depend on N. Features stay where they are (a numpy array or an HDF5
    file's rows) and go to ``device`` in chunks of ``chunk`` rows, so any N fits. ``start``
    warm-starts from another fit (the optimum is unique; only the iterations change).
    """
    device = torch.device(device)
    count = len(labels)
    targets = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    mean, scale = _standardisation(features, chunk, device)
    dim = int(mean.shape[0])
    weight = torch.zeros(num_classes, dim, device=device)
    bias = torch.zeros(num_classes, device=device)
    if start is not None:
        weight, bias = start.weight.clone(), start.bias.clone()
    weight.requires_grad_(True), bias.requires_grad_(True)
    model = LogisticModel(mean, scale, weight, bias)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter, history_size=20,
                                  tolerance_grad=1e-6, tolerance_change=1e-10,
                                  line_search_fn="strong_wolfe")  # fmt: skip

    def objective() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        total = torch.zeros((), device=device)
        for first in range(0, count, chunk):
            rows = _rows(features, first, chunk, device)
            part = F.cross_entropy(model._linear(rows), targets[first : first + chunk].to(device),
                                   reduction="sum") / count  # fmt: skip
            part.backward()
            total += part.detach()
        penalty = weight.pow(2).sum() / (2.0 * cost * count)
        penalty.backward()
        return total + penalty.detach()

    optimizer.step(objective)
    model.iterations = int(optimizer.state[optimizer._params[0]].get("n_iter", 0))
    weight.requires_grad_(False), bias.requires_grad_(False)
    return model


def _standardisation(features, chunk: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension mean and standard deviation (``ddof=0``; 1 where it is 0), in float64."""
    total, squares, count = None, None, 0
    for start in range(0, len(features), chunk):
        rows = _rows(features, start, chunk, device).double()
        total = rows.sum(0) if total is None else total + rows.sum(0)
        squares = rows.pow(2).sum(0) if squares is None else squares + rows.pow(2).sum(0)
        count += len(rows)
    mean = total / count
    std = (squares / count - mean.pow(2)).clamp_min(0).sqrt()
    std[std < 1e-12] = 1.0
    return mean.float(), std.float()


def validated_logistic(
    train_x,
    train_y: np.ndarray,
    test_x,
    test_y: np.ndarray,
    val_x=None,
    val_y: np.ndarray | None = None,
    costs: Sequence[float] = DEFAULT_COSTS,
    metric: str = "top1",
    seed: int = 0,
    device="cpu",
    on_fit: Callable[[float], None] | None = None,
) -> tuple[dict[str, Any], np.ndarray]:
    """The validated linear probe: choose the L2 cost on a validation split, refit, test.

    Without ``val_x`` a class-balanced 20 % of the training split is held out for the
    choice (seeded). Every cost in ``costs`` is fitted on the rest (warm-started from the
    previous, smaller cost) and scored on the validation split by ``metric`` (``top1`` or
    ``mean_per_class``; ties go to the stronger regularisation); the best is refitted on
    train + validation and scored on the test split: top-1, top-5 and mean per-class
    accuracy in %. ``on_fit(cost)`` is called after every fit (progress). Returns the
    JSON-ready summary and the test split's predicted classes.
    """
    if metric not in ("top1", "mean_per_class"):
        raise BadInput(f"unknown metric '{metric}': use top1 or mean_per_class")
    if not costs or min(costs) <= 0:
        raise BadInput("costs must be positive numbers, e.g. 0.01,0.1,1,10")
    train_y, test_y = np.asarray(train_y), np.asarray(test_y)
    if val_x is None:
        held = validation_split(train_y, 0.2, seed)
        fit_x, fit_y = _select(train_x, ~held), train_y[~held]
        val_x, val_y = _select(train_x, held), train_y[held]
        all_x, all_y = train_x, train_y
    else:
        fit_x, fit_y = train_x, train_y
        all_x, all_y = _concatenate(train_x, val_x), np.concatenate([train_y, val_y])
    if len(np.unique(fit_y)) < 2:
        raise BadInput("a linear probe needs at least two classes with training images")
    num_classes = int(max(train_y.max(), test_y.max(), np.asarray(val_y).max())) + 1
    validation, models, model = {}, {}, None
    for cost in sorted(costs):
        model = fit_logistic(fit_x, fit_y, cost, num_classes, device, start=model)
        predictions = model.logits(val_x).argmax(dim=1).cpu().numpy()
        validation[cost] = getattr(scores(predictions, np.asarray(val_y)), metric)
        models[cost] = model
        if on_fit is not None:
            on_fit(cost)
    best = max(sorted(costs), key=lambda c: (validation[c], -c))
    final = fit_logistic(all_x, all_y, best, num_classes, device, start=models[best])
    if on_fit is not None:
        on_fit(best)
    logits = final.logits(test_x)
    predictions = logits.argmax(dim=1).cpu().numpy()
    test = scores(predictions, test_y)
    top5 = accuracy(logits, torch.as_tensor(test_y, device=logits.device)).top5
    return {"protocol": "lbfgs-logistic", "metric": metric, "cost": best,
            "validation": {str(c): validation[c] for c in sorted(costs)},
            "top1": test.top1, "top5": top5, "mean_per_class": test.mean_per_class,
            "train_size": int(len(train_y)), "test_size": int(len(test_y)),
            "iterations": final.iterations}, predictions  # fmt: skip


def _select(features, mask: np.ndarray) -> np.ndarray:
    return np.asarray(features[:])[mask] if not isinstance(features, np.ndarray) else features[mask]


def _concatenate(first, second) -> np.ndarray:
    return np.concatenate([np.asarray(first[:]), np.asarray(second[:])])
