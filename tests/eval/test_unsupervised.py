"""CLD's NMI(f, f') * R(f, f'): retrieval and NMI by hand, the product, the view sampler."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sslkit.data.specs import load_split
from sslkit.data.views import CropSpec, Photometric, ViewSpec
from sslkit.errors import BadInput
from sslkit.eval.unsupervised import (
    instance_retrieval,
    two_view_features,
    unsupervised_score,
    view_agreement_nmi,
)


def test_retrieval_counts_rows_whose_nearest_second_view_is_their_own():
    """Rows 0 and 1 find themselves; rows 2 and 3 are swapped in the second view: R = 0.5."""
    first = torch.eye(4) * torch.tensor([[2.0], [1.0], [0.5], [3.0]])  # scale does not matter
    second = torch.eye(4)[[0, 1, 3, 2]]
    assert instance_retrieval(first, second) == 0.5
    assert instance_retrieval(first, torch.eye(4)) == 1.0


def _blobs(rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    centres = np.eye(8, dtype=np.float32)[: labels.max() + 1] * 10
    return centres[labels] + rng.normal(0, 0.1, (len(labels), 8)).astype(np.float32)


def test_nmi_is_one_for_the_same_partition_and_near_zero_for_independent_ones():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 50)
    first, second = _blobs(rng, labels), _blobs(rng, labels)
    assert view_agreement_nmi(first, second, clusters=4) == pytest.approx(1.0)
    shuffled = _blobs(rng, rng.permutation(labels))
    assert view_agreement_nmi(first, shuffled, clusters=4) < 0.1


def test_score_is_nmi_times_retrieval():
    """Same partition (NMI 1) with half of the rows swapped inside their blob (R = 0.5)."""
    labels = np.repeat(np.arange(2), 4)
    first = torch.from_numpy(_blobs(np.random.default_rng(1), labels))
    order = [1, 0, 2, 3, 5, 4, 6, 7]  # rows 0, 1, 4, 5 retrieve their blob-mate
    second = first[order]
    score = unsupervised_score(first, second, clusters=2)
    assert score.nmi == pytest.approx(1.0)
    assert score.retrieval == 0.5
    assert score.score == pytest.approx(0.5)
    assert (score.clusters, score.images) == (2, 8)


def test_too_many_clusters_is_bad_input():
    with pytest.raises(BadInput, match="--score-clusters"):
        unsupervised_score(torch.randn(5, 3), torch.randn(5, 3), clusters=6)


class _Flatten(torch.nn.Module):
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images.flatten(1)


def _spec(size: int, flip: float) -> ViewSpec:
    photo = Photometric(flip_prob=flip, jitter_prob=0.0, grayscale_prob=0.0)
    crop = CropSpec(size=size, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    return ViewSpec((crop, crop), (photo, photo))


def test_two_views_are_seeded_and_identity_views_retrieve_perfectly():
    digits = load_split("digits@64", "train")
    size = digits.info.image_size
    augmented = _spec(size, flip=0.5)
    a = two_view_features(_Flatten(), digits, augmented, torch.device("cpu"), images=40, seed=3)
    b = two_view_features(_Flatten(), digits, augmented, torch.device("cpu"), images=40, seed=3)
    assert a[0].shape == (40, 3 * size * size)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], a[1])  # the two views differ (random flips)
    same = two_view_features(_Flatten(), digits, _spec(size, 0.0), torch.device("cpu"), 40, 3)
    assert torch.allclose(same[0], same[1])
    assert instance_retrieval(*same) == 1.0
