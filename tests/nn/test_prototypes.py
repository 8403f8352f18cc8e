"""Prototype contrast and HCSC's selection probabilities against direct computations."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from sslkit.nn.losses import info_nce
from sslkit.nn.prototypes import (
    bernoulli_mask,
    instance_keep_probability,
    log_normalizer,
    negative_prototype_ids,
    parent_keep_table,
    prototype_keep_probability,
    prototype_loss,
)


def _unit(rows: int, dim: int, gen: torch.Generator) -> torch.Tensor:
    return F.normalize(torch.randn(rows, dim, generator=gen, dtype=torch.float64), dim=1)


def _density(k: int, gen: torch.Generator, temperature: float = 0.2) -> torch.Tensor:
    phi = torch.rand(k, generator=gen, dtype=torch.float64) + 0.5
    return temperature * phi / phi.mean()


def _loop_prototype_loss(query, centroids, density, positives, negatives, mask, mode):
    """Row by row: [q·c_pos / phi_pos, (q·c_n)·m / phi_n ...] (exclude drops m = 0)."""
    total = 0.0
    for i in range(len(query)):
        pos = int(positives[i])
        logits = [float(query[i] @ centroids[pos]) / float(density[pos])]
        for j, n in enumerate(negatives.tolist()):
            keep = 1.0 if mask is None else float(mask[i, j])
            if mode == "exclude" and keep == 0:
                continue
            logits.append(float(query[i] @ centroids[n]) * keep / float(density[n]))
        total += -logits[0] + math.log(sum(math.exp(x) for x in logits))
    return total / len(query)


@pytest.mark.parametrize("mode", ["zero_logit", "exclude"])
@pytest.mark.parametrize("masked", [False, True])
def test_prototype_loss_matches_loop(mode, masked):
    """Positive over its own phi, negatives over theirs; masks zero or drop the logit."""
    gen = torch.Generator().manual_seed(0)
    query, centroids = _unit(3, 5, gen), _unit(7, 5, gen)
    density = _density(7, gen)
    positives = torch.tensor([2, 5, 2])
    negatives = negative_prototype_ids(positives, 7)
    assert negatives.tolist() == [0, 1, 3, 4, 6]
    mask = None
    if masked:
        mask = torch.tensor([[1, 0, 1, 1, 0], [0, 0, 1, 1, 1], [1, 1, 1, 1, 1]],
                            dtype=torch.float64)  # fmt: skip
    loss = prototype_loss(query, centroids, density, positives, negatives, mask, mode)
    expected = _loop_prototype_loss(query, centroids, density, positives, negatives, mask, mode)
    assert loss.item() == pytest.approx(expected, rel=1e-10)


def test_zero_logit_differs_from_exclude():
    """A de-selected negative still adds exp(0) in zero_logit mode but not in exclude mode."""
    gen = torch.Generator().manual_seed(1)
    query, centroids = _unit(2, 4, gen), _unit(5, 4, gen)
    density = _density(5, gen)
    positives, negatives = torch.tensor([0, 1]), torch.tensor([2, 3, 4])
    mask = torch.tensor([[0.0, 1, 1], [1, 1, 0]], dtype=torch.float64)
    zero = prototype_loss(query, centroids, density, positives, negatives, mask, "zero_logit")
    exclude = prototype_loss(query, centroids, density, positives, negatives, mask, "exclude")
    assert zero.item() > exclude.item()
    with pytest.raises(ValueError, match="mask_mode"):
        prototype_loss(query, centroids, density, positives, negatives, mask, "drop")


def test_prototype_loss_gradient_reaches_query_only():
    """The loss is differentiable in the query; centroids and phi are constants."""
    gen = torch.Generator().manual_seed(2)
    query = _unit(3, 4, gen).requires_grad_()
    centroids, density = _unit(6, 4, gen), _density(6, gen)
    positives = torch.tensor([0, 0, 3])
    prototype_loss(query, centroids, density, positives,
                   negative_prototype_ids(positives, 6)).backward()  # fmt: skip
    assert query.grad is not None and query.grad.abs().sum() > 0


def test_negative_ids_exclude_batch_positives_and_keep_the_highest():
    """Negatives = all ids except any batch positive, including k-1 (the authors' code drops
    the highest)."""
    assert negative_prototype_ids(torch.tensor([0, 3, 3, 9]), 10).tolist() == [1, 2, 4, 5, 6, 7, 8]
    assert negative_prototype_ids(torch.tensor([4, 1]), 10).tolist()[-1] == 9
    gen = torch.Generator().manual_seed(3)
    for _ in range(20):
        k = int(torch.randint(2, 40, (1,), generator=gen))
        positives = torch.randint(0, k, (int(torch.randint(1, 8, (1,), generator=gen)),),
                                  generator=gen)  # fmt: skip
        negatives = negative_prototype_ids(positives, k)
        assert negatives.dtype == torch.long and negatives.ndim == 1
        assert set(negatives.tolist()).isdisjoint(positives.tolist())
        assert sorted(set(negatives.tolist()) | set(positives.tolist())) == list(range(k))
        assert len(set(negatives.tolist())) == len(negatives)


def _direct_instance_keep(queue, centroids, density, positives):
    soft = torch.softmax(queue @ centroids.t() / density.clamp_min(1e-3), dim=1)
    return (1 - soft[:, positives].t()).clamp(0.0, 0.999)


@pytest.mark.parametrize("dtype, atol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
@pytest.mark.parametrize("b, K, k, d", [(4, 16, 6, 8), (1, 5, 3, 2), (7, 33, 50, 16)])
def test_instance_keep_probability_equals_direct_softmax(b, K, k, d, dtype, atol):
    """The cached-normaliser keep probability equals 1 − softmax(Q·Cᵀ/φ)[:, pos]ᵀ, clamped."""
    gen = torch.Generator().manual_seed(b * 100 + k)
    queue, centroids = _unit(K, d, gen).to(dtype), _unit(k, d, gen).to(dtype)
    density = _density(k, gen).to(dtype)
    if dtype == torch.float64:  # logits of 1/1e-3 need double precision to compare closely
        density[0] = 1e-5  # below the 1e-3 floor
    positives = torch.randint(0, k, (b,), generator=gen)
    positives[0] = 0
    keep = instance_keep_probability(queue, log_normalizer(queue, centroids, density),
                                     centroids, density, positives)  # fmt: skip
    assert keep.shape == (b, K) and keep.dtype == dtype
    expected = _direct_instance_keep(queue, centroids, density, positives)
    assert torch.allclose(keep, expected, atol=atol, rtol=0)
    assert keep.min() >= 0 and keep.max() <= 0.999


def test_instance_keep_probability_clamps():
    """A queue entry surely in the positive's cluster is kept with probability 0; others 0.999."""
    centroids = torch.eye(3)
    density = torch.full((3,), 0.01)
    queue = torch.eye(3)[[0, 1, 2, 0]]
    keep = instance_keep_probability(queue, log_normalizer(queue, centroids, density),
                                     centroids, density, torch.tensor([0, 2]))  # fmt: skip
    expected = torch.tensor([[0.0, 0.999, 0.999, 0.0], [0.999, 0.999, 0.0, 0.999]])
    assert torch.allclose(keep, expected, atol=1e-6, rtol=0)


def test_log_normalizer_chunked_equals_unchunked():
    """Chunking the keys does not change log Σ_c exp(key·c / max(φ_c, 1e-3))."""
    gen = torch.Generator().manual_seed(4)
    keys, centroids = _unit(37, 6, gen), _unit(9, 6, gen)
    density = _density(9, gen)
    density[3] = 1e-4
    whole = log_normalizer(keys, centroids, density)
    assert whole.shape == (37,)
    assert torch.allclose(log_normalizer(keys, centroids, density, chunk=5), whole, atol=1e-12)
    assert torch.allclose(log_normalizer(keys, centroids, density, chunk=1), whole, atol=1e-12)
    direct = torch.logsumexp(keys @ centroids.t() / density.clamp_min(1e-3), dim=1)
    assert torch.allclose(whole, direct, atol=1e-12)
    assert log_normalizer(keys[:0], centroids, density).shape == (0,)


@pytest.mark.parametrize("k_low, k_up, b", [(6, 4, 3), (20, 7, 5), (3, 2, 1)])
def test_prototype_keep_probability_equals_direct(k_low, k_up, b):
    """Keep[i, n] = 1 − softmax(C_l·C_{l+1}ᵀ/φ_{l+1})[neg_n, parent_i], clamped to [1e-4, .999]."""
    gen = torch.Generator().manual_seed(k_low)
    lower, upper = _unit(k_low, 5, gen), _unit(k_up, 5, gen)
    phi_up = _density(k_up, gen)
    parents = torch.randint(0, k_up, (k_low,), generator=gen)
    positives = torch.randint(0, k_low, (b,), generator=gen)
    negatives = negative_prototype_ids(positives, k_low)
    table = parent_keep_table(lower @ upper.t(), phi_up)
    assert table.shape == (k_low, k_up)
    keep = prototype_keep_probability(table, negatives, parents[positives])
    assert keep.shape == (b, len(negatives))
    soft = torch.softmax(lower @ upper.t() / phi_up, dim=1)
    expected = (1 - soft[negatives][:, parents[positives]].t()).clamp(1e-4, 0.999)
    assert torch.allclose(keep, expected, atol=1e-12)
    for i in range(b):  # entry by entry, as the method defines it
        for j, n in enumerate(negatives.tolist()):
            direct = 1 - soft[n, parents[positives[i]]]
            assert keep[i, j] == pytest.approx(float(direct.clamp(1e-4, 0.999)), abs=1e-12)


def test_prototype_keep_probability_clamps():
    """A negative certainly under the query's parent keeps 1e-4; an unrelated one 0.999."""
    lower, upper = torch.eye(4)[:3], torch.eye(4)  # child c sits exactly on parent c
    table = parent_keep_table(lower @ upper.t(), torch.full((4,), 0.01))
    keep = prototype_keep_probability(table, torch.tensor([1, 2]), torch.tensor([1, 3]))
    expected = torch.tensor([[1e-4, 0.999], [0.999, 0.999]])
    assert torch.allclose(keep, expected, atol=1e-9, rtol=0)


def test_bernoulli_masks_reproducible_with_a_fixed_generator():
    """Masks drawn from the keep probabilities repeat with the same seed and follow p."""
    gen = torch.Generator().manual_seed(5)
    queue, centroids = _unit(200, 6, gen).float(), _unit(5, 6, gen).float()
    density = _density(5, gen).float()
    keep = instance_keep_probability(queue, log_normalizer(queue, centroids, density),
                                     centroids, density, torch.tensor([0, 1, 4]))  # fmt: skip
    draws = [bernoulli_mask(keep.expand(50, -1, -1).contiguous(), torch.Generator().manual_seed(9))
             for _ in range(2)]  # fmt: skip
    assert torch.equal(draws[0], draws[1])
    assert draws[0].dtype == keep.dtype
    assert set(draws[0].unique().tolist()) <= {0.0, 1.0}
    rates = draws[0]
    assert torch.allclose(rates.mean(0), keep, atol=0.25)
    assert (rates.mean() - keep.mean()).abs() < 0.01
    other = bernoulli_mask(keep, torch.Generator().manual_seed(10))
    assert not torch.equal(other, draws[0][0])


@pytest.mark.parametrize("mode", ["zero_logit", "exclude"])
def test_info_nce_all_ones_mask_is_unmasked(mode):
    """With every negative kept, masked InfoNCE equals plain InfoNCE in both modes."""
    gen = torch.Generator().manual_seed(6)
    query, key, queue = _unit(4, 8, gen), _unit(4, 8, gen), _unit(16, 8, gen)
    plain = info_nce(query, key, queue, 0.2)
    masked = info_nce(query, key, queue, 0.2, torch.ones(4, 16, dtype=torch.float64), mode)
    assert masked.item() == pytest.approx(plain.item(), rel=1e-12)


@pytest.mark.parametrize("p", [0.0, 1e-4, 0.3, 0.999, 1.0])
def test_bernoulli_mask_rate_matches_keep_probability(p):
    """Over 2M draws the kept fraction is p (15-bit uniforms: within 3.1e-5 + noise)."""
    keep = torch.full((2000, 1000), p)
    rate = bernoulli_mask(keep, torch.Generator().manual_seed(3)).float().mean().item()
    noise = 5 * (max(p * (1 - p), 1e-9) / keep.numel()) ** 0.5
    assert abs(rate - p) <= 2 ** -15 + noise
    if p == 0.0:
        assert rate == 0.0
    if p == 1.0:
        assert rate == 1.0


def test_bernoulli_mask_lanes_are_independent_and_uniform():
    """Every one of the four 16-bit lanes of a random word gives the same rate."""
    keep = torch.full((4_000_000,), 0.5)
    mask = bernoulli_mask(keep, torch.Generator().manual_seed(4)).view(-1, 4).float()
    assert torch.allclose(mask.mean(0), torch.full((4,), 0.5), atol=0.002)
