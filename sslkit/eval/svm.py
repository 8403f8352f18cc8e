"""Linear SVMs on frozen features, full-data and low-shot (PCL; Goyal et al.).

VOC07 (PCL ``eval_svm_voc.py``): features ``f / (||f|| + 1e-5)``; labels {1, 0, -1} with
0 (difficult only) mapped to -1 on train *and* test, as the script does; one LIBLINEAR
``LinearSVC`` per class with the settings of :data:`SVM_SETTINGS` and ``C = cost``; the
test score is the decision value and the metric the VOC "all points" mAP (x100).

Low-shot: for each run and each class (in order), the images in which the class is
present are shuffled with Python's ``random`` (seeded once, before the first draw, like
``random.seed(0)`` in the script) and the first ``k`` taken; the training set is the
concatenation (an image can appear more than once). ``runs`` draws per ``k``, mean and
(population) std reported. Without ``shots``: all training images, one run.

Places205 (PCL, no official script): the same SVM settings, one-vs-rest over the classes,
prediction = argmax of the decision values, top-1 on the validation split.
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from sslkit.data.voc import VOC_CLASSES
from sslkit.errors import BadInput
from sslkit.eval.voc import voc_average_precision

if TYPE_CHECKING:
    from sklearn.svm import LinearSVC

#: ``LinearSVC`` settings of PCL's ``eval_svm_voc.py`` (C is the ``--cost``).
SVM_SETTINGS: dict[str, Any] = {
    "class_weight": {1: 2, -1: 1},
    "penalty": "l2",
    "loss": "squared_hinge",
    "dual": True,
    "tol": 1e-4,
    "max_iter": 2000,
    "intercept_scaling": 1.0,
    "random_state": 0,
}
DEFAULT_SHOTS = (1, 2, 4, 8, 16)
DEFAULT_COST = 0.5


def svm_normalize(features: np.ndarray) -> np.ndarray:
    """``f / (||f||_2 + 1e-5)`` row by row (the scripts' normalisation)."""
    features = np.asarray(features, dtype=np.float32)
    return features / (np.linalg.norm(features, axis=1) + 1e-5)[:, None]


def make_svm(cost: float = DEFAULT_COST) -> LinearSVC:
    """A ``LinearSVC`` with :data:`SVM_SETTINGS` and ``C = cost``."""
    from sklearn.svm import LinearSVC

    return LinearSVC(C=cost, **SVM_SETTINGS)


def fit_binary_svm(features: np.ndarray, labels: np.ndarray, cost: float) -> LinearSVC | None:
    """Fit one SVM on {1, -1} labels; ``None`` when the labels hold only one value."""
    from sklearn.exceptions import ConvergenceWarning

    if len(np.unique(labels)) < 2:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return make_svm(cost).fit(features, labels)


def low_shot_indices(members: Sequence[np.ndarray], k: int, rng: random.Random) -> np.ndarray:
    """For each class in order: shuffle its image indices with ``rng``, keep the first ``k``.

    ``members[c]`` lists the images of class ``c`` in dataset order (PCL shuffles that
    list of images, which selects the same images as shuffling their indices).
    """
    if k <= 0:
        raise BadInput(f"low-shot k must be positive, got {k}: use e.g. 1,2,4,8,16")
    taken: list[int] = []
    for indices in members:
        items = [int(i) for i in indices]
        rng.shuffle(items)
        taken.extend(items[:k])
    return np.asarray(taken, dtype=np.int64)


def low_shot_runs(evaluate: Callable[[np.ndarray], float], members: Sequence[np.ndarray],
                  size: int, shots: Sequence[int] | None, runs: int,
                  seed: int) -> dict[str, dict[str, Any]]:  # fmt: skip
    """``evaluate(train indices) -> metric`` per draw; per ``k`` the runs, mean and std.

    One ``random.Random(seed)`` serves every draw in order (k ascending as given, then
    run), like the script's single ``random.seed``. ``shots=None``: all ``size`` images.
    """
    if shots is None:
        value = evaluate(np.arange(size, dtype=np.int64))
        return {"full": {"runs": [value], "mean": value, "std": 0.0, "train_size": size}}
    if runs <= 0:
        raise BadInput("--runs must be positive")
    rng = random.Random(seed)
    results = {}
    for k in shots:
        values, sizes = [], []
        for _ in range(runs):
            chosen = low_shot_indices(members, k, rng)
            values.append(evaluate(chosen))
            sizes.append(len(chosen))
        results[str(k)] = {"runs": values, "mean": float(np.mean(values)),
                           "std": float(np.std(values)), "train_size": sizes[0]}  # fmt: skip
    return results


def voc_svm_ap(train_x: np.ndarray, train_targets: np.ndarray, test_x: np.ndarray,
               test_targets: np.ndarray, cost: float = DEFAULT_COST) -> dict[str, Any]:  # fmt: skip
    """Per-class SVMs on normalised features; VOC AP on test with 0 -> -1 on both sides.

    Classes without both labels in the training set (or without a test positive) get
    ``None`` and are left out of the mean (never the case on the full VOC07).
    """
    train_y = np.where(train_targets == 0, -1, train_targets)
    test_y = np.where(test_targets == 0, -1, test_targets)
    scores = np.zeros(test_y.shape, dtype=np.float64)
    fitted = np.zeros(test_y.shape[1], dtype=bool)
    for column in range(train_y.shape[1]):
        svm = fit_binary_svm(train_x, train_y[:, column], cost)
        if svm is not None:
            scores[:, column] = svm.decision_function(test_x)
            fitted[column] = True
    ap = voc_average_precision(scores, np.where(fitted[None, :], test_y, 0))
    return {"map": ap.mean, "per_class": ap.per_class}


def voc_svm(train_x: np.ndarray, train_targets: np.ndarray, test_x: np.ndarray,
            test_targets: np.ndarray, cost: float = DEFAULT_COST,
            shots: Sequence[int] | None = None, runs: int = 5,
            seed: int = 0) -> dict[str, Any]:  # fmt: skip
    """The VOC07 SVM protocol: full data (``shots=None``) or low-shot k per class."""
    train_x, test_x = svm_normalize(train_x), svm_normalize(test_x)
    members = [np.flatnonzero(train_targets[:, c] > 0) for c in range(train_targets.shape[1])]
    per_class_runs: list[list[float | None]] = []

    def evaluate(indices: np.ndarray) -> float:
        result = voc_svm_ap(train_x[indices], train_targets[indices], test_x, test_targets,
                            cost)  # fmt: skip
        per_class_runs.append(result["per_class"])
        return result["map"]

    results = low_shot_runs(evaluate, members, len(train_x), shots, runs, seed)
    for position, entry in enumerate(results.values()):
        first = position * len(entry["runs"])
        entry["per_class"] = _mean_per_class(per_class_runs[first : first + len(entry["runs"])])
    return {"protocol": "svm", "metric": "mAP", "cost": cost, "settings": _settings(),
            "normalization": "f/(||f||+1e-5)", "difficult": "negative (0 -> -1, as the script)",
            "shots": results, "seed": seed, "runs": 1 if shots is None else runs,
            "train_size": int(len(train_x)), "test_size": int(len(test_x))}  # fmt: skip


def _mean_per_class(runs: list[list[float | None]]) -> dict[str, float | None]:
    """Per class, the mean AP over the runs that could score it (``None`` if none could)."""
    means = []
    for values in zip(*runs, strict=True):
        known = [v for v in values if v is not None]
        means.append(float(np.mean(known)) if known else None)
    names = VOC_CLASSES if len(means) == len(VOC_CLASSES) else map(str, range(len(means)))
    return dict(zip(names, means, strict=True))


def places_svm_top1(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
                    test_y: np.ndarray, cost: float = DEFAULT_COST) -> float:  # fmt: skip
    """One-vs-rest SVMs over the training classes; top-1 (%) of the argmax decision."""
    classes = np.unique(train_y)
    if len(classes) < 2:
        raise BadInput("the Places205 SVM needs training images of at least two classes")
    scores = np.empty((len(test_x), len(classes)), dtype=np.float64)
    for column, label in enumerate(classes):
        svm = fit_binary_svm(train_x, np.where(train_y == label, 1, -1), cost)
        scores[:, column] = svm.decision_function(test_x)
    predictions = classes[scores.argmax(axis=1)]
    return 100.0 * float((predictions == test_y).mean())


def places_svm(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
               cost: float = DEFAULT_COST, shots: Sequence[int] | None = None, runs: int = 5,
               seed: int = 0) -> dict[str, Any]:  # fmt: skip
    """The Places205 SVM protocol: full data or low-shot k images per class, top-1."""
    train_x, test_x = svm_normalize(train_x), svm_normalize(test_x)
    members = [np.flatnonzero(train_y == c) for c in range(int(train_y.max()) + 1)]

    def evaluate(indices: np.ndarray) -> float:
        return places_svm_top1(train_x[indices], train_y[indices], test_x, test_y, cost)

    results = low_shot_runs(evaluate, members, len(train_x), shots, runs, seed)
    return {"protocol": "svm", "metric": "top1", "cost": cost, "settings": _settings(),
            "normalization": "f/(||f||+1e-5)", "shots": results, "seed": seed,
            "runs": 1 if shots is None else runs,
            "train_size": int(len(train_x)), "test_size": int(len(test_x))}  # fmt: skip


def _settings() -> dict[str, Any]:
    """:data:`SVM_SETTINGS` with JSON-friendly class-weight keys."""
    weights = {str(label): weight for label, weight in SVM_SETTINGS["class_weight"].items()}
    return {**SVM_SETTINGS, "class_weight": weights}
