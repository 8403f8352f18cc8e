"""The sampled classifier pool: FIFO replacement and the lazy (closed-form) SGD update."""

from __future__ import annotations

import pytest
import torch

from sslkit.errors import BadInput
from sslkit.nn.sampled_classifier import SampledClassifier, SkippedStepMaps

MU, WD = 0.9, 0.05  # a large weight decay so that missed steps matter


def _pool(rows=12, dim=3, size=5, seed=0) -> SampledClassifier:
    return SampledClassifier(rows, dim, size, MU, WD, torch.Generator().manual_seed(seed))


def test_one_missed_step_is_the_2x2_map_of_the_spec():
    maps = SkippedStepMaps(MU, WD)
    assert torch.equal(maps.step_map(0.5), torch.tensor([[MU, WD], [-0.5 * MU, 1 - 0.5 * WD]],
                                                        dtype=torch.float64))  # fmt: skip
    v, u = torch.tensor([[0.3, -1.0]]), torch.tensor([[2.0, 0.5]])
    maps.advance(0.5)
    new_v, new_u = maps.apply(v, u, torch.tensor([0]))
    # plain SGD with only the weight-decay gradient: d = wd·u, v = mu·v + d, u = u - lr·v
    expected_v = MU * v + WD * u
    expected_u = u - 0.5 * expected_v
    torch.testing.assert_close(new_v, expected_v)
    torch.testing.assert_close(new_u, expected_u)


def test_k_missed_steps_equal_k_sgd_steps_with_only_weight_decay():
    maps = SkippedStepMaps(MU, WD)
    lrs = [0.3, 0.25, 0.2, 0.1, 0.05]
    v = torch.randn(4, 6, dtype=torch.float64)
    u = torch.randn(4, 6, dtype=torch.float64)
    ref_v, ref_u = v.clone(), u.clone()
    for lr in lrs:
        maps.advance(lr)
        ref_v = MU * ref_v + WD * ref_u
        ref_u = ref_u - lr * ref_v
    new_v, new_u = maps.apply(v, u, torch.zeros(4, dtype=torch.long))
    torch.testing.assert_close(new_v, ref_v)
    torch.testing.assert_close(new_u, ref_u)
    # a row stored after step 2 only misses steps 2, 3, 4
    part_v, part_u = maps.apply(v[:1], u[:1], torch.tensor([2]))
    ref_v, ref_u = v[:1].clone(), u[:1].clone()
    for lr in lrs[2:]:
        ref_v = MU * ref_v + WD * ref_u
        ref_u = ref_u - lr * ref_v
    torch.testing.assert_close(part_u, ref_u)
    maps.prune(3)
    assert maps.start == 3
    torch.testing.assert_close(maps.apply(v[:1], u[:1], torch.tensor([3]))[1],
                               _steps(v[:1], u[:1], lrs[3:])[1])  # fmt: skip


def _steps(v, u, lrs):
    for lr in lrs:
        v = MU * v + WD * u
        u = u - lr * v
    return v, u


def test_lazy_pool_updates_equal_eager_sgd_of_all_rows():
    """The invariant: the sampled update == every row stepped every time."""
    torch.manual_seed(0)
    pool = _pool(rows=12, dim=3, size=5)
    eager_u = pool.store_weight.clone().double()
    eager_v = torch.zeros_like(eager_u)
    batches = [torch.tensor(b) for b in ([0, 7], [3, 4], [7, 11], [1, 2], [9, 5], [0, 6],
                                         [10, 8], [3, 11], [2, 7])]  # fmt: skip
    generator = torch.Generator().manual_seed(1)
    for step, batch in enumerate(batches):
        lr = 0.5 * (1 + torch.cos(torch.tensor(step / len(batches) * 3.14159))).item()
        pool.bring_in(batch)
        assert set(batch.tolist()) <= set(pool.slot_row.tolist())
        grad_rows = torch.randn(pool.pool_size, 3, generator=generator)
        pool.pool_weight.grad = grad_rows.clone()
        full_grad = torch.zeros_like(eager_u)
        full_grad[pool.slot_row] = grad_rows.double()
        eager_v = MU * eager_v + full_grad + WD * eager_u
        eager_u = eager_u - lr * eager_v
        pool.sgd_step(lr)
    weights, velocities = pool.full_weights()
    torch.testing.assert_close(weights.double(), eager_u, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(velocities.double(), eager_v, rtol=1e-5, atol=1e-5)


def test_missing_rows_replace_the_slots_loaded_earliest_and_present_rows_stay():
    pool = _pool(rows=10, size=4)  # slots hold rows 0..3, all "loaded" at step -1
    pool.bring_in(torch.tensor([8, 9]))
    pool.sgd_step(0.1)
    assert sorted(pool.slot_row.tolist()) == [2, 3, 8, 9]  # slots 0, 1 were the oldest
    pool.bring_in(torch.tensor([9, 5]))  # 9 is refreshed, 5 replaces the oldest (row 2)
    assert sorted(pool.slot_row.tolist()) == [3, 5, 8, 9]
    assert int(pool.slot_of[2]) == -1 and int(pool.stored_at[2]) == 1
    assert all(int(pool.slot_of[r]) >= 0 for r in (3, 5, 8, 9))


def test_a_batch_larger_than_the_pool_is_bad_input():
    with pytest.raises(BadInput, match="pool_size"):
        _pool(rows=10, size=3).bring_in(torch.arange(4))


def test_state_round_trip_continues_identically():
    a, b = _pool(seed=0), _pool(seed=5)
    for step, rows in enumerate(([0, 1], [6, 7], [8, 9], [2, 10])):
        a.bring_in(torch.tensor(rows))
        a.pool_weight.grad = torch.ones_like(a.pool_weight) * (step + 1)
        a.sgd_step(0.2)
    b.load_state_dict(a.state_dict())
    for pool in (a, b):
        pool.bring_in(torch.tensor([11, 3]))
        pool.pool_weight.grad = torch.full_like(pool.pool_weight, 0.5)
        pool.sgd_step(0.1)
    torch.testing.assert_close(a.full_weights()[0], b.full_weights()[0])
    assert a.now == b.now == 5


def test_an_overflowed_step_changes_no_row():
    pool = _pool()
    pool.bring_in(torch.tensor([6, 7]))
    before = pool.full_weights()[0]
    pool.pool_weight.grad = torch.full_like(pool.pool_weight, float("inf"))
    pool.sgd_step(0.3)
    torch.testing.assert_close(pool.full_weights()[0], before)
