"""Many / medium / few-shot accuracy on long-tailed training data (OLTR, Liu et al. 2019).

Test classes are grouped by how many *training* images they have: many-shot (more than
100), medium-shot (20 to 100) and few-shot (fewer than 20), as in OLTR and CLD (Tab. 1).
A group's top-1 is the mean of its classes' per-class accuracies (the ``shot_acc`` of
the OLTR / decoupling code; on a balanced test split, as in CIFAR-LT and ImageNet-LT,
that is the accuracy over the group's test images). Classes without test images are left
out; a group without classes is ``None`` (null in JSON).

``knn`` and ``linear`` report the groups when the training split is long-tailed, which
here means its largest class has at least :data:`LONG_TAIL_MIN_RATIO` times the images
of its smallest (every ``~ltR`` spec with R >= 2, ImageNet-LT, ... but not digits, whose
classes hold 133 to 138 training images).
"""

from __future__ import annotations

from typing import Any

import numpy as np

MANY_SHOT_ABOVE = 100  # many-shot: more than 100 training images
FEW_SHOT_BELOW = 20  # few-shot: fewer than 20; medium-shot: 20 to 100
LONG_TAIL_MIN_RATIO = 2.0
SHOT_GROUPS = ("many", "medium", "few")


def shot_group(train_count: int) -> str:
    """``"many"`` (> 100 training images), ``"medium"`` (20-100) or ``"few"`` (< 20)."""
    if train_count > MANY_SHOT_ABOVE:
        return "many"
    return "few" if train_count < FEW_SHOT_BELOW else "medium"


def class_counts(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Images per class ``0..num_classes-1`` (labels below 0, i.e. unknown, are ignored)."""
    labels = np.asarray(labels, dtype=np.int64)
    return np.bincount(labels[labels >= 0], minlength=num_classes)[:num_classes]


def is_long_tailed(train_labels: np.ndarray, test_labels: np.ndarray | None = None) -> bool:
    """Whether the training split's largest class has >= 2x the images of its smallest.

    The classes are those seen in either split (a test class without training images
    counts as a class of 0, so it makes the split long-tailed).
    """
    train_labels = np.asarray(train_labels, dtype=np.int64)
    seen = train_labels if test_labels is None else np.concatenate(
        [train_labels, np.asarray(test_labels, dtype=np.int64)])  # fmt: skip
    seen = np.unique(seen[seen >= 0])
    if len(seen) < 2:
        return False
    counts = class_counts(train_labels, int(seen.max()) + 1)[seen]
    return bool(counts.max() >= LONG_TAIL_MIN_RATIO * counts.min() and counts.max() > 0)


def shot_accuracy(train_labels: np.ndarray, predictions: np.ndarray,
                  test_labels: np.ndarray) -> dict[str, Any]:  # fmt: skip
    """Top-1 (in %) of the many-, medium- and few-shot test classes.

    ``train_labels`` give the per-class training counts; ``predictions`` and
    ``test_labels`` are the test split's top-1 predictions and truths (length N). Returns
    ``{"many": {"classes", "train_images", "test_images", "top1"} or None, "medium": ...,
    "few": ..., "imbalance_ratio", "many_above", "few_below"}``; the imbalance ratio is
    the largest over the smallest training class (``None`` if a class has none).
    """
    predictions = np.asarray(predictions, dtype=np.int64).reshape(-1)
    test_labels = np.asarray(test_labels, dtype=np.int64).reshape(-1)
    if predictions.shape != test_labels.shape:
        raise ValueError(f"{len(predictions)} predictions for {len(test_labels)} test labels")
    train_labels = np.asarray(train_labels, dtype=np.int64)
    test_classes = np.unique(test_labels[test_labels >= 0])
    size = int(max(train_labels.max(initial=-1), test_labels.max(initial=-1))) + 1
    train_counts = class_counts(train_labels, size)
    per_group: dict[str, list[tuple[int, int, float]]] = {group: [] for group in SHOT_GROUPS}
    for label in test_classes:
        mask = test_labels == label
        hits = float((predictions[mask] == label).mean())
        per_group[shot_group(int(train_counts[label]))].append(
            (int(train_counts[label]), int(mask.sum()), hits))  # fmt: skip
    result: dict[str, Any] = {}
    for group, rows in per_group.items():
        result[group] = None if not rows else {
            "classes": len(rows),
            "train_images": sum(row[0] for row in rows),
            "test_images": sum(row[1] for row in rows),
            "top1": 100.0 * float(np.mean([row[2] for row in rows])),
        }  # fmt: skip
    present = train_counts[np.union1d(test_classes, np.unique(train_labels[train_labels >= 0]))]
    smallest = int(present.min()) if len(present) else 0
    result["imbalance_ratio"] = float(present.max()) / smallest if smallest else None
    result["many_above"] = MANY_SHOT_ABOVE
    result["few_below"] = FEW_SHOT_BELOW
    return result
