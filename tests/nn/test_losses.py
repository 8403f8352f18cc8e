"""InfoNCE: hand-computed values, the ln(1+K) baseline and the negative mask."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from sslkit.nn.losses import info_nce


def test_hand_computed_two_by_two():
    """A 2x2 example with two negatives matches -log softmax computed by hand."""
    query = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    key = torch.tensor([[0.6, 0.8], [0.8, 0.6]])
    negatives = torch.tensor([[0.0, 1.0], [-1.0, 0.0]])
    t = 0.5
    # query 0: positive 0.6, negatives 0 and -1; query 1: positive 0.6, negatives 1 and 0
    loss0 = -math.log(math.exp(0.6 / t) / (math.exp(0.6 / t) + math.exp(0.0) + math.exp(-1 / t)))
    loss1 = -math.log(math.exp(0.6 / t) / (math.exp(0.6 / t) + math.exp(1 / t) + math.exp(0.0)))
    loss = info_nce(query, key, negatives, t)
    assert loss.ndim == 0
    assert loss.item() == pytest.approx((loss0 + loss1) / 2, rel=1e-6)


def test_all_zero_similarities_give_log_one_plus_k():
    """With every similarity 0 all 1+K logits are equal, so the loss is exactly ln(1+K)."""
    query = torch.zeros(3, 4)
    query[:, 0] = 1.0
    key = torch.zeros(3, 4)
    key[:, 1] = 1.0
    negatives = F.normalize(torch.tensor([[0.0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1],
                                          [0, 1, 1, 0], [0, 0, 1, 1], [0, 1, 0, 1],
                                          [0, 1, 1, 1]]), dim=1)  # fmt: skip
    for t in (0.07, 0.2, 1.0):
        loss = info_nce(query, key, negatives, t)
        assert loss.item() == pytest.approx(math.log(1 + 7), abs=1e-6)


def test_random_unit_vectors_near_log_one_plus_k():
    """Random unit vectors in 128-d at T=0.2: ln(1+K) plus about σ²/2T² ≈ 0.1."""
    gen = torch.Generator().manual_seed(0)
    b, k, d, t = 256, 1024, 128, 0.2
    query = F.normalize(torch.randn(b, d, generator=gen), dim=1)
    key = F.normalize(torch.randn(b, d, generator=gen), dim=1)
    negatives = F.normalize(torch.randn(k, d, generator=gen), dim=1)
    excess = info_nce(query, key, negatives, t).item() - math.log(1 + k)
    # similarities ~ N(0, 1/d): E[exp(s/T)] = exp(1 / (2 d T²)) = exp(0.0977)
    assert excess == pytest.approx(1 / (2 * d * t * t), abs=0.04)


def test_negative_mask_zero_counts_as_exp_zero():
    """A zero in negative_mask turns that negative's logit into 0, i.e. exp(0) = 1."""
    query = torch.tensor([[1.0, 0.0]])
    key = torch.tensor([[1.0, 0.0]])
    negatives = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    unmasked = info_nce(query, key, negatives, 1.0)
    masked = info_nce(query, key, negatives, 1.0, negative_mask=torch.tensor([[0.0, 1.0]]))
    e = math.e
    assert unmasked.item() == pytest.approx(-math.log(e / (e + e + 1)), rel=1e-6)
    assert masked.item() == pytest.approx(-math.log(e / (e + 1 + 1)), rel=1e-6)


def test_mask_of_ones_changes_nothing():
    """An all-ones mask gives the unmasked loss."""
    gen = torch.Generator().manual_seed(1)
    query = F.normalize(torch.randn(4, 8, generator=gen), dim=1)
    key = F.normalize(torch.randn(4, 8, generator=gen), dim=1)
    negatives = F.normalize(torch.randn(5, 8, generator=gen), dim=1)
    plain = info_nce(query, key, negatives, 0.2)
    masked = info_nce(query, key, negatives, 0.2, negative_mask=torch.ones(4, 5))
    assert torch.equal(plain, masked)


def test_positive_is_column_zero_and_gradient_reaches_query():
    """A perfect positive with far negatives gives ~0 loss; the query gets a gradient."""
    query = torch.tensor([[1.0, 0.0]], requires_grad=True)
    key = torch.tensor([[1.0, 0.0]])
    negatives = torch.tensor([[-1.0, 0.0], [-1.0, 0.0]])
    loss = info_nce(query, key, negatives, 0.05)
    assert loss.item() == pytest.approx(math.log(1 + 2 * math.exp(-40)), abs=1e-12)
    # if the positive were not at column 0 the loss would be about 40
    loss_swapped = info_nce(query, negatives[:1], torch.cat([key, negatives[:1]]), 0.05)
    assert loss_swapped.item() > 39
    loss_swapped.backward()
    assert query.grad is not None and query.grad.abs().sum() > 0
