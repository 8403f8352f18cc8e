"""Long-tailed specs (``~ltR``, ``cifar10-lt``): the CIFAR-LT profile, subsets, parsing."""

from __future__ import annotations

import re

import numpy as np
import pytest

from sslkit.data.specs import (
    DataSpec,
    load_split,
    long_tail_counts,
    long_tail_indices,
    parse_spec,
)
from sslkit.errors import BadInput

# CIFAR-10-LT, ratio 100, by hand: 5000 * 0.01 ** (c / 9) = 5000, 2997.4, 1796.9, 1077.2,
# 645.8, 387.1, 232.1, 139.1, 83.4, 50 -> floor (LDAM-DRW's int()).
CIFAR10_LT100 = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]


def test_cifar10_lt_profile_by_hand():
    """CIFAR-10, n_max 5000, ratio 100: LDAM-DRW's get_img_num_per_cls (imb_factor 0.01)."""
    assert long_tail_counts(5000, 10, 100) == CIFAR10_LT100
    ldam = [int(5000 * (0.01 ** (c / (10 - 1.0)))) for c in range(10)]
    assert ldam == CIFAR10_LT100


@pytest.mark.parametrize(("n_max", "classes", "ratio", "total", "last"), [
    (5000, 10, 100, 12406, 50),  # CIFAR-10-LT (the sizes the long-tail papers report)
    (5000, 10, 10, 20431, 500),
    (500, 100, 100, 10847, 5),  # CIFAR-100-LT
    (500, 100, 10, 19573, 50),
])  # fmt: skip
def test_cifar_lt_sizes(n_max, classes, ratio, total, last):
    """The profile gives the published CIFAR-10/100-LT training-set sizes."""
    counts = long_tail_counts(n_max, classes, ratio)
    assert counts[0] == n_max and counts[-1] == last and sum(counts) == total
    assert counts == sorted(counts, reverse=True)


def test_profile_edge_cases():
    """Ratio 1 keeps every class at n_max; one class keeps n_max."""
    assert long_tail_counts(7, 4, 1) == [7, 7, 7, 7]
    assert long_tail_counts(9, 1, 50) == [9]


def _ldam_reference(labels: np.ndarray, counts: list[int], seed: int = 0) -> np.ndarray:
    """LDAM-DRW's gen_imbalanced_data: np.random.seed, then shuffle each class in turn."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        chosen = []
        for label, count in zip(np.unique(labels), counts, strict=True):
            idx = np.where(labels == label)[0]
            np.random.shuffle(idx)
            chosen.append(idx[:count])
    finally:
        np.random.set_state(state)
    return np.sort(np.concatenate(chosen))


def test_indices_follow_the_reference_and_are_deterministic():
    """Counts follow the profile; the images are LDAM's (seed 0); another seed differs."""
    labels = np.random.default_rng(3).permutation(np.repeat(np.arange(5), 40))
    chosen = long_tail_indices(labels, 8)
    assert np.bincount(labels[chosen]).tolist() == long_tail_counts(40, 5, 8) == [40, 23, 14, 8, 5]
    assert chosen.dtype == np.int64 and np.array_equal(chosen, np.unique(chosen))
    assert np.array_equal(chosen, _ldam_reference(labels, [40, 23, 14, 8, 5]))
    assert np.array_equal(chosen, long_tail_indices(labels, 8))
    assert not np.array_equal(chosen, long_tail_indices(labels, 8, seed=1))


def test_indices_use_the_smallest_class_as_n_max():
    """Uneven classes: n_max is the smallest class, so every class can fill its quota."""
    labels = np.array([0] * 30 + [1] * 12 + [2] * 25)
    assert np.bincount(labels[long_tail_indices(labels, 4)]).tolist() == [12, 6, 3]


def test_indices_refuse_unlabelled_images_and_empty_classes():
    """Label -1 or a ratio that leaves the last class nothing are bad input."""
    with pytest.raises(BadInput, match="needs every training image labelled"):
        long_tail_indices(np.array([0, 1, -1, 1]), 2)
    with pytest.raises(BadInput, match="leaves the last class no image"):
        long_tail_indices(np.repeat([0, 1], 10), 20)


@pytest.mark.parametrize(("text", "expected"), [
    ("digits~lt10", DataSpec("digits", imbalance=10.0)),
    ("digits@1000~lt10", DataSpec("digits", None, 1000, 10.0)),
    ("digits~lt10@1000", DataSpec("digits", None, 1000, 10.0)),
    ("digits~LT2.5", DataSpec("digits", imbalance=2.5)),
    ("fashion-mnist:~/data~lt100", DataSpec("fashion-mnist", "~/data", imbalance=100.0)),
    ("fashion-mnist:~/data", DataSpec("fashion-mnist", "~/data")),
    ("cifar10-lt:/r", DataSpec("cifar10", "/r", imbalance=100.0)),
    ("CIFAR100-LT:/r", DataSpec("cifar100", "/r", imbalance=100.0)),
    ("cifar10-lt:/r~lt50", DataSpec("cifar10", "/r", imbalance=50.0)),
    ("cifar100-lt:/r@5000", DataSpec("cifar100", "/r", 5000, 100.0)),
])  # fmt: skip
def test_parse_long_tail_specs(text, expected):
    """~ltR composes with @N in either order; the cifar*-lt aliases default to ratio 100."""
    assert parse_spec(text) == expected


def test_long_tail_spec_strings():
    """A long-tailed spec prints as NAME[:ROOT][@N]~ltR and parses back to itself."""
    assert str(parse_spec("digits~lt10@1000")) == "digits@1000~lt10"
    assert str(parse_spec("cifar10-lt:/r")) == "cifar10:/r~lt100"
    assert str(parse_spec("digits~lt2.5")) == "digits~lt2.5"
    for text in ("digits~lt10", "imagefolder:/x@5~lt3", "cifar100:/r~lt100"):
        assert str(parse_spec(text)) == text
        assert parse_spec(str(parse_spec(text))) == parse_spec(text)
    assert str(parse_spec("digits~lt10")) != str(parse_spec("digits"))


@pytest.mark.parametrize(("text", "message"), [
    ("digits~lt0.5", "bad imbalance ratio '0.5'"),
    ("digits~lt", "bad imbalance ratio ''"),
    ("digits~ltx", "bad imbalance ratio 'x'"),
    ("digits~lt1e3", "bad imbalance ratio '1e3'"),
    ("digits~lt-5", "bad imbalance ratio '-5'"),
    ("digits~10", "bad long-tail suffix"),
    ("digits~lt10~lt5", "bad long-tail suffix"),
    ("cifar10-lt", "write cifar10-lt:PATH"),
    ("stl10:/data~lt10", "mostly unlabelled"),
    ("mnist-lt", "known are digits"),
])  # fmt: skip
def test_parse_bad_long_tail_specs(text, message):
    """Bad ratios, suffixes, missing roots and unlabelled data are one-line bad input."""
    with pytest.raises(BadInput, match=re.escape(message)) as raised:
        parse_spec(text)
    assert "\n" not in str(raised.value)


@pytest.fixture(scope="module")
def digits_lt():
    """digits@1000~lt10 (train, test) and the balanced digits@1000 (train, test)."""
    return ((load_split("digits@1000~lt10", "train"), load_split("digits@1000~lt10", "test")),
            (load_split("digits@1000", "train"), load_split("digits@1000", "test")))  # fmt: skip


def test_digits_long_tail_train_split(digits_lt):
    """The train split follows the profile from n_max 100 (digits@1000: 100 per class)."""
    (train, _), (balanced, _) = digits_lt
    assert np.bincount(balanced.labels).tolist() == [100] * 10
    assert np.bincount(train.labels).tolist() == [100, 77, 59, 46, 35, 27, 21, 16, 12, 10]
    assert train.spec == "digits@1000~lt10" and len(train) == 403
    assert set(train.source_indices) <= set(balanced.source_indices)
    position = {int(s): i for i, s in enumerate(balanced.source_indices)}
    for row in (0, 200, 402):
        twin = position[int(train.source_indices[row])]
        assert np.array_equal(train.images[row], balanced.images[twin])
        assert train.labels[row] == balanced.labels[twin]


def test_digits_long_tail_keeps_test_split_and_changes_fingerprint(digits_lt):
    """The test split is untouched; the train split's fingerprint and spec are new."""
    (train, test), (balanced, balanced_test) = digits_lt
    assert np.array_equal(test.source_indices, balanced_test.source_indices)
    assert np.array_equal(test.labels, balanced_test.labels)
    assert test.fingerprint() == balanced_test.fingerprint()
    assert train.fingerprint() != balanced.fingerprint()
    assert train.spec != balanced.spec and test.spec == "digits@1000~lt10"
    again = load_split("digits~lt10@1000", "train")  # the other order: the same subset
    assert again.fingerprint() == train.fingerprint() and again.spec == train.spec


def test_digits_ratio_too_large_is_bad_input():
    """digits@100 has 10 images per class: ratio 20 would leave the last class none."""
    with pytest.raises(BadInput, match="use a smaller R"):
        load_split("digits@100~lt20", "train")
    assert len(load_split("digits@100~lt20", "test")) == 100  # the test split is balanced


def test_fashion_mnist_long_tail_counts():
    """Fashion-MNIST (6,000 per class) with ratio 100: the CIFAR-LT profile from 6000."""
    try:
        train = load_split("fashion-mnist~lt100", "train")
    except BadInput as exc:
        pytest.skip(f"Fashion-MNIST is not installed: {exc}")
    assert np.bincount(train.labels).tolist() == long_tail_counts(6000, 10, 100)
    assert np.bincount(train.labels).tolist()[-1] == 60
    assert train.spec.startswith("fashion-mnist:") and train.spec.endswith("~lt100")
