"""Weighted kNN: a toy example checked by hand, chunking, validation of the inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sslkit.errors import BadInput
from sslkit.eval.knn import KnnScores, knn_classify


def _unit(cosine: float, sign: float = 1.0) -> list[float]:
    """The 2-d unit vector whose cosine with (1, 0) is ``cosine``."""
    return [cosine, sign * math.sqrt(1 - cosine * cosine)]


# Query A = (1, 0), true class 0: its 3 nearest are 0.99 (class 0), 0.80 and 0.79 (class 1).
# Query B = (-1, 0), true class 1: its 3 nearest are 1.0 (class 1), 0.5 and cos 80° (class 0).
NEAR_A = [_unit(0.99), _unit(0.80), _unit(0.79, -1.0)]
NEAR_B = [[-1.0, 0.0], _unit(-0.5), _unit(-math.cos(math.radians(80)), -1.0)]
SCALES = np.array([[3.0], [0.5], [1.0], [2.0], [1.0], [7.0]])  # not unit: knn normalises
BANK = (np.array(NEAR_A + NEAR_B) * SCALES).astype(np.float32)
BANK_LABELS = np.array([0, 1, 1, 1, 0, 0])
QUERIES = np.array([[2.0, 0.0], [-0.5, 0.0]], dtype=np.float32)
QUERY_LABELS = np.array([0, 1])


def test_k1_nearest_neighbour_is_right_for_both():
    """k=1: A's nearest is class 0 and B's is class 1 (100 %) at any temperature."""
    for t in (0.07, 1.0):
        result = knn_classify(BANK, BANK_LABELS, QUERIES, QUERY_LABELS, ks=[1], temperature=t)
        assert result.top1 == {1: 100.0}


def test_k3_low_temperature_weights_beat_majority():
    """k=3, T=0.07: exp(s/T) lets the single closest neighbour outvote two farther ones."""
    t = 0.07
    a_class0 = math.exp(0.99 / t)
    a_class1 = math.exp(0.80 / t) + math.exp(0.79 / t)
    b_class1 = math.exp(1.0 / t)
    b_class0 = math.exp(0.5 / t) + math.exp(math.cos(math.radians(80)) / t)
    assert a_class0 > a_class1 and b_class1 > b_class0  # both queries right by hand
    result = knn_classify(BANK, BANK_LABELS, QUERIES, QUERY_LABELS, ks=[3], temperature=t)
    assert result.top1[3] == 100.0


def test_k3_high_temperature_follows_majority():
    """k=3, T=1: weights are nearly equal, the two farther neighbours win: both wrong."""
    a_class0 = math.exp(0.99)  # 2.69
    a_class1 = math.exp(0.80) + math.exp(0.79)  # 4.43
    b_class1 = math.exp(1.0)  # 2.72
    b_class0 = math.exp(0.5) + math.exp(math.cos(math.radians(80)))  # 2.84
    assert a_class1 > a_class0 and b_class0 > b_class1  # both queries wrong by hand
    result = knn_classify(BANK, BANK_LABELS, QUERIES, QUERY_LABELS, ks=[1, 3], temperature=1.0)
    assert result.top1 == {1: 100.0, 3: 0.0}
    assert result.top5 == {1: 100.0, 3: 100.0}  # two classes: the truth is always in the top 5
    assert (result.train_size, result.test_size, result.temperature) == (6, 2, 1.0)


def test_one_query_right_one_wrong_gives_fifty_percent():
    """With query A relabelled as class 1, k=1 is right only for B: 50 %."""
    result = knn_classify(BANK, BANK_LABELS, QUERIES, np.array([1, 1]), ks=[1])
    assert result.top1 == {1: 50.0}


def test_k_larger_than_bank_uses_whole_bank():
    """k=100 on a 6-image bank votes with all 6 images."""
    result = knn_classify(BANK, BANK_LABELS, QUERIES, QUERY_LABELS, ks=[6, 100], temperature=1.0)
    assert result.top1[100] == result.top1[6]


def test_chunking_gives_identical_results():
    """memory_mb=0 (one query per chunk) equals one big chunk; numpy and torch inputs agree."""
    gen = np.random.default_rng(0)
    train, test = gen.normal(size=(40, 6)), gen.normal(size=(25, 6))
    train_y, test_y = gen.integers(0, 7, size=40), gen.integers(0, 7, size=25)
    ks = (1, 5, 10, 200)
    whole = knn_classify(train, train_y, test, test_y, ks=ks, memory_mb=256)
    chunked = knn_classify(train, train_y, test, test_y, ks=ks, memory_mb=0)
    as_torch = knn_classify(torch.from_numpy(train), torch.from_numpy(train_y),
                            torch.from_numpy(test), torch.from_numpy(test_y), ks=ks)  # fmt: skip
    assert whole.as_dict() == chunked.as_dict() == as_torch.as_dict()


def test_predictions_per_k_match_top1_and_chunking():
    """Every K's per-query predictions give its top-1; they do not depend on chunking."""
    from sslkit.eval.knn import knn_vote, nearest_neighbours

    gen = np.random.default_rng(1)
    train, test = gen.normal(size=(50, 6)), gen.normal(size=(31, 6))
    train_y, test_y = gen.integers(0, 4, size=50), gen.integers(0, 4, size=31)
    result = knn_classify(train, train_y, test, test_y, ks=(1, 7, 20))
    assert set(result.predictions) == {1, 7, 20}
    for k, predicted in result.predictions.items():
        assert predicted.shape == (31,) and predicted.dtype == np.int64
        assert 100.0 * (predicted == test_y).mean() == pytest.approx(result.top1[k])
    similarities, neighbours = nearest_neighbours(train, test, 20)
    assert np.array_equal(result.predictions[1], train_y[neighbours[:, 0]])
    small = knn_vote(similarities, neighbours, train_y, test_y, [1, 7, 20], 0.07, chunk=4)
    assert all(np.array_equal(small.predictions[k], result.predictions[k]) for k in (1, 7, 20))
    assert "predictions" not in result.as_dict() and small == result


def test_best_k_and_as_dict():
    """best_k is the K with the highest top-1, the smallest one on ties."""
    result = KnnScores(top1={10: 50.0, 20: 70.0, 100: 70.0}, top5={10: 80.0, 20: 90.0, 100: 95.0},
                       temperature=0.07, train_size=5, test_size=3)  # fmt: skip
    assert result.best_k == 20
    data = result.as_dict()
    assert data["best"] == {"k": 20, "top1": 70.0, "top5": 90.0}
    assert data["k"]["100"] == {"top1": 70.0, "top5": 95.0, "neighbours": 5}  # 5 images
    assert list(data["k"]) == ["10", "20", "100"]  # natural order, not "10", "100", "20"
    assert result.capped() == [10, 20, 100]


def test_mismatched_dimensions_are_bad_input():
    """Train and test features of different widths are bad input."""
    with pytest.raises(BadInput, match="3-d but test features are 2-d"):
        knn_classify(np.ones((4, 3)), np.zeros(4), np.ones((2, 2)), np.zeros(2), ks=[1])


@pytest.mark.parametrize("where", ["train", "test"])
def test_unknown_labels_are_bad_input(where):
    """A label of -1 in the bank or in the queries is bad input."""
    train_y, test_y = np.array([0, 1, 0, 1, 1, 0]), np.array([0, 1])
    (train_y if where == "train" else test_y)[1] = -1
    with pytest.raises(BadInput, match="label -1"):
        knn_classify(BANK, train_y, QUERIES, test_y, ks=[1])


@pytest.mark.parametrize(
    "kwargs",
    [{"temperature": 0.0}, {"temperature": -1.0}, {"ks": [0, 3]}, {"ks": []}],
)
def test_bad_parameters_are_bad_input(kwargs):
    """Non-positive temperature or K, or no K at all, is bad input."""
    with pytest.raises(BadInput):
        knn_classify(BANK, BANK_LABELS, QUERIES, QUERY_LABELS, **{"ks": [1], **kwargs})


def test_empty_features_are_bad_input():
    """An empty bank or an empty query set is bad input."""
    with pytest.raises(BadInput, match="non-empty"):
        knn_classify(np.zeros((0, 2)), np.zeros(0), QUERIES, QUERY_LABELS, ks=[1])
    with pytest.raises(BadInput, match="non-empty"):
        knn_classify(BANK, BANK_LABELS, np.zeros((0, 2)), np.zeros(0), ks=[1])


@pytest.mark.parametrize("k", [1, 3, 7])
def test_bank_blocks_merge_to_the_exact_top_k(k):
    """memory_mb=0 splits the 40-row bank into blocks of k rows: the merged neighbours are
    the exact top-k of the whole similarity matrix (a brute-force torch.topk)."""
    from sslkit.eval.knn import nearest_neighbours

    gen = np.random.default_rng(k)
    train = gen.normal(size=(40, 6)).astype(np.float32)
    test = gen.normal(size=(9, 6)).astype(np.float32)
    similarities, neighbours = nearest_neighbours(train, test, k, memory_mb=0)
    unit = torch.nn.functional.normalize
    exact = (unit(torch.from_numpy(test), dim=1) @ unit(torch.from_numpy(train), dim=1).t())
    top, where = exact.topk(k, dim=1)
    assert torch.equal(neighbours, where)
    assert torch.allclose(similarities, top, atol=1e-6)


def test_bank_read_from_disk_equals_in_memory(tmp_path):
    """A bank left on disk (open_features, read block by block) gives the in-memory result."""
    from sslkit.features.store import FeatureSet, open_feature_pair, write_features

    gen = np.random.default_rng(5)
    sets = {}
    for name, rows in (("train", 300), ("test", 40)):
        sets[name] = FeatureSet(gen.normal(size=(rows, 8)).astype(np.float32),
                                gen.integers(0, 5, size=rows), np.arange(rows),
                                {"layer": "backbone", "dataset": "x", "split": name})  # fmt: skip
        write_features(tmp_path / f"{name}.h5", sets[name])
    train, test = sets["train"], sets["test"]
    memory = knn_classify(train.features, train.labels, test.features, test.labels, ks=(1, 5, 20))
    with open_feature_pair(tmp_path / "train.h5", tmp_path / "test.h5") as (lazy, queries, _):
        assert not isinstance(lazy.features, np.ndarray)
        disk = knn_classify(lazy.features, lazy.labels, queries.features, queries.labels,
                            ks=(1, 5, 20), memory_mb=0)  # fmt: skip
    assert disk == memory
