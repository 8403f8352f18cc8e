"""Many / medium / few-shot accuracy: group boundaries and a hand-made example."""

from __future__ import annotations

import numpy as np
import pytest

from sslkit.commands.common import shot_table
from sslkit.eval.longtail import class_counts, is_long_tailed, shot_accuracy, shot_group


@pytest.mark.parametrize(("count", "group"), [
    (5000, "many"), (101, "many"), (100, "medium"), (20, "medium"), (19, "few"), (0, "few"),
])  # fmt: skip
def test_shot_group_boundaries(count, group):
    """many > 100, medium 20-100 (both ends included), few < 20 training images."""
    assert shot_group(count) == group


def _train(counts: list[int]) -> np.ndarray:
    return np.repeat(np.arange(len(counts)), counts)


def test_shot_accuracy_by_hand():
    """Four classes with 150, 50, 10 and 120 training images, two test images each.

    Class 0 (many): 2/2 right; class 1 (medium): 1/2; class 2 (few): 0/2; class 3
    (many): 1/2. Many = mean(100, 50) = 75; medium = 50; few = 0.
    """
    train = _train([150, 50, 10, 120])
    test = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    predictions = np.array([0, 0, 1, 0, 1, 3, 3, 2])
    groups = shot_accuracy(train, predictions, test)
    assert groups["many"] == {"classes": 2, "train_images": 270, "test_images": 4, "top1": 75.0}
    assert groups["medium"] == {"classes": 1, "train_images": 50, "test_images": 2, "top1": 50.0}
    assert groups["few"] == {"classes": 1, "train_images": 10, "test_images": 2, "top1": 0.0}
    assert groups["imbalance_ratio"] == 15.0
    assert (groups["many_above"], groups["few_below"]) == (100, 20)


def test_group_top1_is_the_mean_of_per_class_accuracies():
    """An unbalanced test split: the group's top-1 averages classes, not images (OLTR)."""
    train = _train([200, 300])
    test = np.array([0, 0, 0, 0, 1])
    predictions = np.array([0, 0, 0, 0, 0])  # class 0: 100 %, class 1: 0 %
    assert shot_accuracy(train, predictions, test)["many"]["top1"] == 50.0


def test_empty_groups_are_none_and_unseen_classes_count_as_few():
    """No medium class -> None; a test class without training images is few-shot."""
    train = _train([500, 0, 5])
    test = np.array([0, 1, 2])
    groups = shot_accuracy(train, np.array([0, 1, 0]), test)
    assert groups["medium"] is None
    assert groups["few"] == {"classes": 2, "train_images": 5, "test_images": 2, "top1": 50.0}
    assert groups["imbalance_ratio"] is None  # a class has no training image


def test_mismatched_predictions_are_refused():
    """Predictions and test labels must pair up."""
    with pytest.raises(ValueError, match="3 predictions for 2 test labels"):
        shot_accuracy(_train([5, 5]), np.array([0, 1, 1]), np.array([0, 1]))


def test_is_long_tailed():
    """Largest class at least twice the smallest; digits-like small differences are not."""
    assert not is_long_tailed(_train([133, 136, 131, 138]))
    assert not is_long_tailed(_train([100] * 10))
    assert is_long_tailed(_train([100, 77, 59, 46, 35, 27, 21, 16, 12, 10]))
    assert is_long_tailed(_train([40, 20]))
    assert not is_long_tailed(_train([40, 21]))
    assert is_long_tailed(_train([50, 50]), np.array([0, 1, 2]))  # class 2 has no training image
    assert not is_long_tailed(_train([50]))


def test_class_counts_and_table():
    """Per-class counts ignore -1; the table shows classes and top-1 per group."""
    assert class_counts(np.array([0, 2, 2, -1]), 4).tolist() == [1, 0, 2, 0]
    groups = shot_accuracy(_train([150, 10]), np.array([0, 0]), np.array([0, 1]))
    columns, rows = shot_table(groups)
    assert columns == ["", "many (>100)", "medium (20-100)", "few (<20)"]
    assert rows == [["classes", 1, 0, 1], ["top-1 %", 100.0, "-", 0.0]]
