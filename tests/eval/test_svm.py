"""The SVM protocol (PCL): settings, normalisation, low-shot draws, VOC, Places."""

from __future__ import annotations

import random

import numpy as np
import pytest

from sslkit.errors import BadInput
from sslkit.eval.svm import (
    low_shot_indices,
    low_shot_runs,
    make_svm,
    places_svm,
    svm_normalize,
    voc_svm,
    voc_svm_ap,
)


def test_svm_has_exactly_the_scripts_settings():
    """LinearSVC(C=cost, class_weight {1: 2, -1: 1}, l2, squared hinge, dual, tol 1e-4,
    max_iter 2000, intercept_scaling 1, random_state 0)."""
    params = make_svm(0.5).get_params()
    assert params["C"] == 0.5 and params["class_weight"] == {1: 2, -1: 1}
    assert params["penalty"] == "l2" and params["loss"] == "squared_hinge"
    assert params["dual"] is True and params["tol"] == 1e-4 and params["max_iter"] == 2000
    assert params["intercept_scaling"] == 1.0 and params["random_state"] == 0
    assert make_svm(2.0).get_params()["C"] == 2.0


def test_normalisation_divides_by_norm_plus_1e_5():
    """f / (||f|| + 1e-5); a zero row stays zero instead of becoming NaN."""
    features = np.array([[3.0, 4.0], [0.0, 0.0]], dtype=np.float32)
    out = svm_normalize(features)
    assert out[0] == pytest.approx([3 / (5 + 1e-5), 4 / (5 + 1e-5)])
    assert (out[1] == 0).all()


def test_low_shot_takes_k_per_class_like_the_script():
    """k images of every class (all of a smaller class); the same draw as shuffling
    the per-class lists with random.seed(0); reproducible, and seeds differ."""
    members = [np.array([0, 3, 5, 9, 12]), np.array([1, 3, 4]), np.array([7])]
    chosen = low_shot_indices(members, 2, random.Random(0))
    assert len(chosen) == 5
    assert set(chosen[:2]) <= set(members[0]) and set(chosen[2:4]) <= set(members[1])
    assert chosen[4] == 7
    state = random.getstate()
    try:
        random.seed(0)
        expected = []
        for indices in members:
            images = [f"img{i}" for i in indices]  # PCL shuffles (path, target) tuples
            random.shuffle(images)
            expected += [int(name[3:]) for name in images[:2]]
    finally:
        random.setstate(state)
    assert chosen.tolist() == expected
    assert np.array_equal(low_shot_indices(members, 2, random.Random(0)), chosen)
    draws = {tuple(low_shot_indices(members, 2, random.Random(s))) for s in range(6)}
    assert len(draws) > 1
    with pytest.raises(BadInput):
        low_shot_indices(members, 0, random.Random(0))


def test_low_shot_runs_share_one_generator_across_k_and_runs():
    """Runs per k with mean / std; the draws continue one sequence (k ascending, runs)."""
    members = [np.arange(0, 20), np.arange(20, 40)]
    seen = []

    def evaluate(indices):
        seen.append(indices.tolist())
        return float(len(seen))

    results = low_shot_runs(evaluate, members, 40, (1, 4), runs=3, seed=0)
    assert list(results) == ["1", "4"] and results["1"]["runs"] == [1.0, 2.0, 3.0]
    assert results["4"]["mean"] == pytest.approx(5.0)
    assert results["4"]["std"] == pytest.approx(np.std([4.0, 5.0, 6.0]))
    assert results["1"]["train_size"] == 2 and results["4"]["train_size"] == 8
    rng = random.Random(0)
    assert seen == [low_shot_indices(members, k, rng).tolist() for k in (1, 1, 1, 4, 4, 4)]
    assert low_shot_runs(lambda i: float(len(i)), members, 40, None, 5, 0)["full"]["runs"] == [40.0]


def _voc_like(n: int, seed: int):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    centres = np.random.default_rng(7).normal(size=(3, 8)) * 4
    features = centres[labels] + rng.normal(size=(n, 8))
    targets = np.full((n, 3), -1)
    targets[np.arange(n), labels] = 1
    return features.astype(np.float32), targets


def test_voc_svm_maps_difficult_to_negative_on_train_and_test():
    """0 counts as -1 on both sides: class-0 test images marked difficult become top-scored
    negatives (ignoring them would keep AP 100); 0 on train is the same as -1."""
    train_x, train_t = _voc_like(60, 0)
    test_x, test_t = _voc_like(30, 1)
    train_n, test_n = svm_normalize(train_x), svm_normalize(test_x)
    clean = voc_svm_ap(train_n, train_t, test_n, test_t)
    assert clean["map"] > 95 and clean["per_class"][0] == pytest.approx(100.0)
    hard = test_t.copy()
    hard[np.flatnonzero(test_t[:, 0] == 1)[:2], 0] = 0
    assert voc_svm_ap(train_n, train_t, test_n, hard)["per_class"][0] < 95
    train_zero = train_t.copy()
    train_zero[train_t == -1] = 0
    assert voc_svm_ap(train_n, train_zero, test_n, test_t) == clean


def test_voc_svm_full_and_low_shot_results():
    """Full data: one run of all images; low-shot: k per class, runs, mean, std, per class."""
    train_x, train_t = _voc_like(60, 0)
    test_x, test_t = _voc_like(30, 1)
    full = voc_svm(train_x, train_t, test_x, test_t)
    assert full["shots"]["full"]["train_size"] == 60 and full["shots"]["full"]["mean"] > 95
    assert full["cost"] == 0.5 and full["settings"]["class_weight"] == {"1": 2, "-1": 1}
    low = voc_svm(train_x, train_t, test_x, test_t, shots=(1, 4), runs=3, seed=0)
    assert set(low["shots"]) == {"1", "4"} and len(low["shots"]["1"]["runs"]) == 3
    assert low["shots"]["4"]["train_size"] == 12
    assert low["shots"]["4"]["mean"] > 80
    assert len(low["shots"]["4"]["per_class"]) == 3
    again = voc_svm(train_x, train_t, test_x, test_t, shots=(1, 4), runs=3, seed=0)
    assert again["shots"] == low["shots"]


def test_places_svm_one_vs_rest_top1():
    """Argmax of one-vs-rest decision values; separable blobs score ~100 %."""
    train_x, train_t = _voc_like(90, 2)
    test_x, test_t = _voc_like(45, 3)
    train_y, test_y = train_t.argmax(1), test_t.argmax(1)
    result = places_svm(train_x, train_y, test_x, test_y, shots=(2,), runs=2, seed=1)
    assert result["metric"] == "top1" and result["shots"]["2"]["train_size"] == 6
    assert places_svm(train_x, train_y, test_x, test_y)["shots"]["full"]["mean"] > 97
