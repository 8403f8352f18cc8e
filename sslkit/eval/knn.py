"""Weighted k-nearest-neighbour classification (Wu et al. 2018, NPID), in bounded memory.

For every query the cosine similarities s to all bank features are computed, the top-K
neighbours vote for their class with weight ``exp(s/τ)``, and the class with the largest
summed weight is the prediction (top-5: the five largest). The bank is searched block by
block (it may be a feature file left on disk), so neither the bank nor the ``queries x N``
similarity matrix has to be in memory: a running top-k per query is merged with each
block's.

The neighbour search runs on the GPU with ``torch.mm`` + ``topk`` when the device is CUDA,
and on the CPU with faiss's exact inner-product search (``faiss.knn``: BLAS product and a
per-query heap), which on the 2-core AMD machine of BENCHMARKS.md is ~1.4x faster than
``torch.mm`` + ``topk`` of the same chunk: torch's CPU sgemm is MKL, slower on AMD than the
OpenBLAS faiss ships, and the heap avoids materialising and re-scanning the block.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from sslkit.errors import BadInput

DEFAULT_KS = (10, 20, 100, 200)


@dataclass
class KnnScores:
    """Top-1 / top-5 accuracy (in %) for every K, and the best K by top-1.

    ``predictions`` (from :func:`knn_vote`; not part of :meth:`as_dict`) holds every
    query's top-1 class for every K, e.g. for per-class or many/medium/few-shot accuracy.
    """

    top1: dict[int, float]
    top5: dict[int, float]
    temperature: float
    train_size: int
    test_size: int
    predictions: dict[int, np.ndarray] | None = field(default=None, repr=False, compare=False)

    def capped(self) -> list[int]:
        """The ks larger than the training set (they vote with all of it)."""
        return [k for k in sorted(self.top1) if k > self.train_size]

    @property
    def best_k(self) -> int:
        """The K with the highest top-1 (the smallest such K on ties)."""
        return max(sorted(self.top1), key=lambda k: self.top1[k])

    def as_dict(self) -> dict:
        """Plain types for JSON: scores per k in increasing k (a k above the training set's
        size votes with every training image: ``neighbours`` says how many), the best k."""
        return {
            "k": {str(k): {"top1": self.top1[k], "top5": self.top5[k],
                           "neighbours": min(k, self.train_size)}
                  for k in sorted(self.top1)},  # fmt: skip
            "best": {"k": self.best_k, "top1": self.top1[self.best_k],
                     "top5": self.top5[self.best_k]},  # fmt: skip
            "temperature": self.temperature,
            "train_size": self.train_size,
            "test_size": self.test_size,
        }


def _as_tensor(array, device: torch.device, dtype=torch.float32) -> torch.Tensor:
    if isinstance(array, np.ndarray):
        array = torch.from_numpy(np.ascontiguousarray(array))
    return array.to(device=device, dtype=dtype)


@torch.no_grad()
def knn_classify(
    train_features,
    train_labels,
    test_features,
    test_labels,
    ks: tuple[int, ...] | list[int] = DEFAULT_KS,
    temperature: float = 0.07,
    device: torch.device | str = "cpu",
    memory_mb: int = 256,
) -> KnnScores:
    """Weighted kNN accuracy of the test set against the train set for every K in ``ks``."""
    ks = check_knn_inputs(train_features, train_labels, test_features, test_labels, ks,
                          temperature)  # fmt: skip
    similarities, neighbours = nearest_neighbours(train_features, test_features, ks[-1], device,
                                                  memory_mb)  # fmt: skip
    return knn_vote(similarities, neighbours, train_labels, test_labels, ks, temperature)


def check_knn_inputs(train_features, train_labels, test_features, test_labels, ks,
                     temperature: float) -> list[int]:  # fmt: skip
    """Refuse empty, mismatched or unlabelled inputs; the sorted distinct ``ks``."""
    if len(train_features) == 0 or len(test_features) == 0:
        raise BadInput("kNN needs non-empty train and test features")
    if train_features.shape[1] != test_features.shape[1]:
        raise BadInput(
            f"train features are {train_features.shape[1]}-d but test features are "
            f"{test_features.shape[1]}-d: extract both with the same checkpoint and layer"
        )
    if temperature <= 0:
        raise BadInput(f"temperature must be positive, got {temperature}")
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] <= 0:
        raise BadInput("every K must be a positive integer, e.g. --k 10,20,100,200")
    if (np.asarray(train_labels) < 0).any() or (np.asarray(test_labels) < 0).any():
        raise BadInput("kNN needs labels, but some features have label -1 (unknown)")
    return ks


@torch.no_grad()
def nearest_neighbours(train_features, test_features, k: int, device: torch.device | str = "cpu",
                       memory_mb: int = 256) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Cosine similarities and indices of every query's ``k`` nearest bank rows, best first.

    Both are ``len(test) x min(k, len(train))`` tensors on the CPU. The bank is read block
    by block (``train_features[a:b]``: an array, or the rows of a feature file left on disk
    by :func:`~sslkit.features.store.open_features`), each block about a quarter of
    ``memory_mb``; on the GPU every block is searched by the queries in chunks whose
    similarity block stays within ``memory_mb`` (faiss, on the CPU, tiles it itself), and
    each query's running top-k is merged with the block's.
    """
    device = torch.device(device)
    bank_size, dim = len(train_features), int(train_features.shape[1])
    k = min(k, bank_size)
    budget = memory_mb << 20
    bank_rows = max(k, min(bank_size, budget // (4 * 4 * dim)))
    query_rows = max(1, min(len(test_features), budget // (4 * bank_rows)))
    if device.type == "cpu":
        # faiss tiles the product itself (4096 x 1024 blocks) and keeps only the top k: it
        # gets every query at once, as calls of a few hundred queries run ~5x slower
        query_rows = len(test_features)
    queries = [F.normalize(_as_tensor(test_features[start : start + query_rows], device), dim=1)
               for start in range(0, len(test_features), query_rows)]  # fmt: skip
    best: list[tuple[torch.Tensor, torch.Tensor]] = []
    for offset in range(0, bank_size, bank_rows):
        bank = F.normalize(_as_tensor(train_features[offset : offset + bank_rows], device), dim=1)
        search = neighbour_search(bank)
        for position, chunk in enumerate(queries):
            similarity, neighbour = search(chunk, min(k, len(bank)))
            found = (similarity.cpu(), neighbour.cpu() + offset)
            if offset == 0:
                best.append(found)
            else:
                best[position] = merge_top_k(best[position], found, k)
    return torch.cat([values for values, _ in best]), torch.cat([ids for _, ids in best])


def merge_top_k(first: tuple[torch.Tensor, torch.Tensor], second: tuple[torch.Tensor, torch.Tensor],
                k: int) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """The ``k`` best of two (similarities, indices) neighbour lists per query, best first."""
    values = torch.cat([first[0], second[0]], dim=1)
    indices = torch.cat([first[1], second[1]], dim=1)
    top, where = values.topk(min(k, values.shape[1]), dim=1)
    return top, indices.gather(1, where)


@torch.no_grad()
def knn_vote(similarities: torch.Tensor, neighbours: torch.Tensor, train_labels, test_labels,
             ks: list[int], temperature: float, chunk: int = 4096) -> KnnScores:  # fmt: skip
    """Top-1/top-5 accuracy of the ``exp(s/T)``-weighted vote of the first K neighbours.

    The result also holds each query's predicted class for every K (``predictions``).
    """
    train_y = _as_tensor(train_labels, torch.device("cpu"), torch.long)
    test_y = _as_tensor(test_labels, torch.device("cpu"), torch.long)
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    k_max = neighbours.shape[1]
    correct1 = dict.fromkeys(ks, 0)
    correct5 = dict.fromkeys(ks, 0)
    predicted: dict[int, list[torch.Tensor]] = {k: [] for k in ks}
    for start in range(0, len(test_y), chunk):
        truth = test_y[start : start + chunk]
        weights = (similarities[start : start + chunk] / temperature).exp()
        neighbour_labels = train_y[neighbours[start : start + chunk]]
        for k in ks:
            kk = min(k, k_max)
            scores = torch.zeros(len(truth), num_classes)
            scores.scatter_add_(1, neighbour_labels[:, :kk], weights[:, :kk])
            best = scores.topk(min(5, num_classes), dim=1).indices
            predicted[k].append(best[:, 0])
            correct1[k] += int((best[:, 0] == truth).sum())
            correct5[k] += int((best == truth.unsqueeze(1)).any(dim=1).sum())
    total = len(test_y)
    return KnnScores(
        top1={k: 100.0 * correct1[k] / total for k in ks},
        top5={k: 100.0 * correct5[k] / total for k in ks},
        temperature=temperature,
        train_size=len(train_y),
        test_size=total,
        predictions={k: torch.cat(parts).numpy() if parts else np.zeros(0, dtype=np.int64)
                     for k, parts in predicted.items()},  # fmt: skip
    )


def neighbour_search(bank: torch.Tensor):
    """``search(queries, k) -> (similarities, indices)``, each ``len(queries) x k``, best first."""
    if bank.device.type != "cpu":
        bank_t = bank.t().contiguous()
        return lambda queries, k: (queries @ bank_t).topk(k, dim=1)
    import faiss

    bank_np = np.ascontiguousarray(bank.numpy())

    def search(queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        values, indices = faiss.knn(np.ascontiguousarray(queries.numpy()), bank_np, k,
                                    metric=faiss.METRIC_INNER_PRODUCT)  # fmt: skip
        return torch.from_numpy(values), torch.from_numpy(indices)

    return search


NEIGHBOURS_STORED = 200  # neighbours kept in the cache (more when a larger K is asked)


def cached_knn_classify(train, test, train_file, test_file, ks, temperature: float,
                        device: torch.device | str = "cpu") -> tuple[KnnScores, bool]:  # fmt: skip
    """:func:`knn_classify` of two cached feature sets, reusing their stored neighbour search.

    ``train_file``/``test_file`` are the feature-cache files of ``train``/``test``; the
    search (at least :data:`NEIGHBOURS_STORED` neighbours) is stored next to them, so a
    later run on the same features with any K up to that and any temperature only votes.
    Returns the result and whether the search came from the cache.
    """
    from pathlib import Path

    from sslkit.features.cache import cached_neighbours

    ks = check_knn_inputs(train.features, train.labels, test.features, test.labels, ks,
                          temperature)  # fmt: skip
    k = min(max(ks[-1], NEIGHBOURS_STORED), len(train.features))

    def search(count: int) -> tuple[np.ndarray, np.ndarray]:
        similarities, indices = nearest_neighbours(train.features, test.features, count, device)
        return similarities.numpy(), indices.numpy()

    similarities, indices, hit = cached_neighbours(Path(train_file).parent, Path(train_file),
                                                   Path(test_file), k, search)  # fmt: skip
    result = knn_vote(torch.from_numpy(similarities), torch.from_numpy(indices), train.labels,
                      test.labels, ks, temperature)  # fmt: skip
    return result, hit
