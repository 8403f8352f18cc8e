"""KeyQueue: unit-norm initial rows, FIFO pushes with wrap-around, ids, detached keys."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sslkit.nn.queue import KeyQueue


def _keys(count: int, dim: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(count, dim, generator=gen), dim=1)


def test_initial_rows_are_unit_norm():
    """Every initial row has L2 norm 1, ids are -1 and the pointer is 0."""
    queue = KeyQueue(32, 8, generator=torch.Generator().manual_seed(0))
    assert queue.buffer.shape == (32, 8)
    assert torch.allclose(queue.buffer.norm(dim=1), torch.ones(32), atol=1e-6)
    assert torch.equal(queue.ids, torch.full((32,), -1))
    assert int(queue.pointer) == 0 and queue.size == 32


def test_generator_makes_init_reproducible():
    """The same generator seed gives the same initial rows."""
    a = KeyQueue(8, 4, generator=torch.Generator().manual_seed(3))
    b = KeyQueue(8, 4, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a.buffer, b.buffer)


def test_pointer_and_last_rows_when_size_divisible():
    """After s pushes of B keys: pointer s·B mod K, rows [ptr-B, ptr) hold the last keys."""
    size, batch = 12, 4
    queue = KeyQueue(size, 3)
    for s in range(1, 6):
        keys = _keys(batch, 3, seed=s)
        queue.push(keys)
        pointer = int(queue.pointer)
        assert pointer == (s * batch) % size
        rows = torch.arange(pointer - batch, pointer) % size
        assert torch.equal(queue.buffer[rows], keys)


def test_wrap_around_when_size_not_divisible():
    """K=10, B=4: the third push writes rows 8, 9, 0, 1 and leaves the pointer at 2."""
    queue = KeyQueue(10, 3)
    first, second, third = _keys(4, 3, 1), _keys(4, 3, 2), _keys(4, 3, 3)
    queue.push(first, torch.arange(0, 4))
    queue.push(second, torch.arange(4, 8))
    queue.push(third, torch.arange(8, 12))
    assert int(queue.pointer) == 2
    assert torch.equal(queue.buffer[[8, 9, 0, 1]], third)
    assert torch.equal(queue.buffer[4:8], second)
    assert torch.equal(queue.buffer[2:4], first[2:])  # the two oldest rows not yet overwritten
    assert queue.ids.tolist() == [10, 11, 2, 3, 4, 5, 6, 7, 8, 9]


def test_ids_default_to_minus_one():
    """A push without ids marks the written rows' ids as -1 (unknown)."""
    queue = KeyQueue(6, 2)
    queue.push(_keys(3, 2, 0), torch.tensor([7, 8, 9]))
    queue.push(_keys(3, 2, 1))
    queue.push(_keys(2, 2, 2), torch.tensor([1, 2]))
    assert queue.ids.tolist() == [1, 2, 9, -1, -1, -1]


def test_push_more_than_size_keeps_newest():
    """Pushing more keys than the queue holds keeps the newest K keys and their ids."""
    queue = KeyQueue(5, 2)
    keys = _keys(7, 2, 4)
    queue.push(keys, torch.arange(7))
    assert int(queue.pointer) == 0
    assert torch.equal(queue.buffer, keys[2:])
    assert queue.ids.tolist() == [2, 3, 4, 5, 6]


def test_keys_property_is_detached():
    """Keys pushed from a graph come back without grad and without a graph."""
    queue = KeyQueue(4, 2)
    weight = torch.ones(2, 2, requires_grad=True)
    queue.push(F.normalize(_keys(2, 2, 5) @ weight, dim=1))
    keys = queue.keys
    assert not keys.requires_grad and keys.grad_fn is None
    assert torch.equal(keys, queue.buffer)


def test_state_is_checkpointed():
    """Buffer, ids and pointer are in the state dict and restore a queue exactly."""
    queue = KeyQueue(6, 2)
    queue.push(_keys(4, 2, 6), torch.arange(4))
    restored = KeyQueue(6, 2)
    restored.load_state_dict(queue.state_dict())
    assert set(queue.state_dict()) == {"buffer", "ids", "pointer"}
    assert torch.equal(restored.buffer, queue.buffer)
    assert torch.equal(restored.ids, queue.ids)
    assert int(restored.pointer) == 4
