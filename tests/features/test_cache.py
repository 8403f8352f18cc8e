"""The feature cache: computed once then hit, keyed by provenance, rebuilt when corrupt."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sslkit.features.cache import (
    cache_key,
    cached_features,
    cached_neighbours,
    default_cache_dir,
)
from sslkit.features.store import FeatureSet, read_features

PROVENANCE = {"checkpoint_sha256": "ab" * 32, "layer": "backbone", "dataset": "digits",
              "dataset_fingerprint": "0123456789abcdef", "split": "train",
              "transform": "resize32", "normalized": True}  # fmt: skip


class Counter:
    """A compute callback that counts its calls and stamps the features with the count."""

    def __init__(self, provenance: dict) -> None:
        self.calls = 0
        self.provenance = provenance

    def __call__(self) -> FeatureSet:
        self.calls += 1
        features = np.full((4, 3), float(self.calls), dtype=np.float32)
        return FeatureSet(features, np.array([0, 1, 0, 1]), np.arange(4), dict(self.provenance))


def test_computes_once_then_hits(tmp_path):
    """The first call computes and stores; the second reads the file without computing."""
    compute = Counter(PROVENANCE)
    first, hit1, path1 = cached_features(tmp_path, PROVENANCE, compute)
    second, hit2, path2 = cached_features(tmp_path, dict(PROVENANCE), compute)
    assert (hit1, hit2, compute.calls) == (False, True, 1)
    assert path1 == path2 == tmp_path / f"{cache_key(PROVENANCE)}.h5"
    assert np.array_equal(second.features, first.features)
    assert second.attrs["split"] == "train" and second.attrs["normalized"] is True


def test_changed_provenance_misses(tmp_path):
    """Changing any provenance value gives a new key and a new computation."""
    compute = Counter(PROVENANCE)
    _, _, path = cached_features(tmp_path, PROVENANCE, compute)
    for key, value in (("split", "test"), ("checkpoint_sha256", "cd" * 32), ("layer", "head")):
        changed = {**PROVENANCE, key: value}
        compute.provenance = changed
        calls = compute.calls
        features, hit, other = cached_features(tmp_path, changed, compute)
        assert not hit and compute.calls == calls + 1 and other != path
        assert features.features[0, 0] == compute.calls
    assert len(list(tmp_path.glob("*.h5"))) == 4


def test_corrupt_cache_file_is_rebuilt(tmp_path):
    """A garbage file at the cache path is replaced by freshly computed features."""
    compute = Counter(PROVENANCE)
    _, _, path = cached_features(tmp_path, PROVENANCE, compute)
    path.write_bytes(b"\x89HDF\r\n\x1a\n garbage")
    features, hit, again = cached_features(tmp_path, PROVENANCE, compute)
    assert not hit and again == path and compute.calls == 2
    assert read_features(path).features[0, 0] == 2.0
    assert cached_features(tmp_path, PROVENANCE, compute)[1]  # valid again: a hit


def test_truncated_cache_file_is_rebuilt(tmp_path):
    """A cache file cut short is rebuilt, not reported."""
    compute = Counter(PROVENANCE)
    _, _, path = cached_features(tmp_path, PROVENANCE, compute)
    path.write_bytes(path.read_bytes()[:300])
    _, hit, _ = cached_features(tmp_path, PROVENANCE, compute)
    assert not hit and compute.calls == 2


def test_file_with_other_provenance_is_rebuilt(tmp_path):
    """A valid feature file whose attributes disagree with the key's provenance is rebuilt."""
    wrong = Counter({**PROVENANCE, "split": "test"})
    cached_features(tmp_path, PROVENANCE, wrong)  # stored under PROVENANCE's key, wrong attrs
    right = Counter(PROVENANCE)
    _, hit, path = cached_features(tmp_path, PROVENANCE, right)
    assert not hit and right.calls == 1
    assert read_features(path).attrs["split"] == "train"


def test_cache_key_ignores_order_and_sees_values():
    """The key depends on the provenance values, not on the dict's order."""
    reordered = dict(reversed(list(PROVENANCE.items())))
    assert cache_key(reordered) == cache_key(PROVENANCE)
    assert cache_key({**PROVENANCE, "normalized": False}) != cache_key(PROVENANCE)
    assert len(cache_key(PROVENANCE)) == 32


def test_default_cache_dir_follows_environment(monkeypatch, tmp_path):
    """$SSLKIT_CACHE sets the cache root; the features sit in its features/ folder."""
    monkeypatch.setenv("SSLKIT_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path / "features"


def test_none_provenance_value_still_hits(tmp_path):
    """A provenance value None (stored as '') does not turn every lookup into a miss."""
    provenance = {**PROVENANCE, "checkpoint_format": None}
    compute = Counter(provenance)
    cached_features(tmp_path, provenance, compute)
    _, hit, _ = cached_features(tmp_path, provenance, compute)
    assert hit and compute.calls == 1


class NeighbourSearch:
    """A search callback that counts its calls and returns k columns of known values."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        self.calls.append(k)
        similarities = np.tile(np.linspace(1, 0, k, dtype=np.float32), (3, 1))
        return similarities, np.tile(np.arange(k), (3, 1))


def test_neighbours_are_stored_and_sliced_for_smaller_k(tmp_path):
    search = NeighbourSearch()
    train, test = tmp_path / "aaaa.h5", tmp_path / "bbbb.h5"
    first = cached_neighbours(tmp_path, train, test, 8, search)
    smaller = cached_neighbours(tmp_path, train, test, 3, search)
    assert (first[2], smaller[2]) == (False, True) and search.calls == [8]
    assert np.array_equal(smaller[1], first[1][:, :3])
    assert np.allclose(smaller[0], first[0][:, :3])


def test_neighbours_are_searched_again_for_larger_k_or_another_pair(tmp_path):
    search = NeighbourSearch()
    train, test = tmp_path / "aaaa.h5", tmp_path / "bbbb.h5"
    cached_neighbours(tmp_path, train, test, 4, search)
    assert not cached_neighbours(tmp_path, train, test, 6, search)[2]  # more than stored
    assert cached_neighbours(tmp_path, train, test, 6, search)[2]
    assert not cached_neighbours(tmp_path, train, tmp_path / "cccc.h5", 4, search)[2]
    assert search.calls == [4, 6, 4]


def test_corrupt_neighbour_file_is_rebuilt(tmp_path):
    search = NeighbourSearch()
    train, test = tmp_path / "aaaa.h5", tmp_path / "bbbb.h5"
    cached_neighbours(tmp_path, train, test, 4, search)
    (stored,) = tmp_path.glob("neighbours-*.h5")
    stored.write_bytes(b"not hdf5")
    similarities, indices, hit = cached_neighbours(tmp_path, train, test, 4, search)
    assert not hit and search.calls == [4, 4] and indices.shape == (3, 4)


def _fill_slowly(cache_dir: str, log: str, queue) -> None:
    """A process asking the cache for PROVENANCE's features with a slow compute."""
    import os
    import time

    def compute() -> FeatureSet:
        with open(log, "a") as handle:
            handle.write(f"{os.getpid()}\n")
        time.sleep(1.0)  # long enough for the other process to ask meanwhile
        features = np.full((4, 3), float(os.getpid()), dtype=np.float32)
        return FeatureSet(features, np.array([0, 1, 0, 1]), np.arange(4), dict(PROVENANCE))

    stored, hit, _ = cached_features(Path(cache_dir), PROVENANCE, compute)
    queue.put((float(stored.features[0, 0]), hit))


def test_concurrent_runs_compute_once_and_agree(tmp_path):
    """Two processes asking for the same entry at once: one computes, the other waits and hits."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    log = tmp_path / "computed.log"
    workers = [context.Process(target=_fill_slowly, args=(str(tmp_path / "cache"), str(log),
                                                             queue))
               for _ in range(2)]  # fmt: skip
    for worker in workers:
        worker.start()
    results = [queue.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    assert len(log.read_text().split()) == 1, "the features were computed twice"
    assert sorted(hit for _, hit in results) == [False, True]
    assert results[0][0] == results[1][0]  # both hold the one stored file's features
    (entry,) = (tmp_path / "cache").glob("*.h5")
    assert read_features(entry).features[0, 0] == results[0][0]


def test_lock_of_a_killed_run_does_not_block(tmp_path):
    """A lock file left by a dead process is only a file: the next run takes the lock."""
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / f"{cache_key(PROVENANCE)}.h5.lock").write_text("")
    compute = Counter(PROVENANCE)
    _, hit, _ = cached_features(cache, PROVENANCE, compute)
    assert not hit and compute.calls == 1
