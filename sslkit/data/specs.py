"""Data spec strings: ``NAME[:ROOT][@N]`` -> a dataset split.

``digits``, ``fashion-mnist[:ROOT]``, ``imagefolder:PATH``, ``cifar10:ROOT``,
``cifar100:ROOT``, ``stl10:ROOT``. A suffix ``@N`` takes a reproducible class-balanced
subset of N images of each split (e.g. ``fashion-mnist@6000``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sslkit.data import sources
from sslkit.data.base import ImageDataset
from sslkit.errors import BadInput

KNOWN_DATASETS = ("digits", "fashion-mnist", "imagefolder", "cifar10", "cifar100", "stl10")
NEEDS_ROOT = ("imagefolder", "cifar10", "cifar100", "stl10")
SUBSET_SEED = 0


@dataclass(frozen=True)
class DataSpec:
    """A parsed data spec: dataset name, optional root folder, optional subset size."""

    name: str
    root: str | None = None
    subset: int | None = None

    def __str__(self) -> str:
        text = self.name + (f":{self.root}" if self.root else "")
        return text + (f"@{self.subset}" if self.subset else "")


def parse_spec(text: str) -> DataSpec:
    """Parse ``NAME[:ROOT][@N]``; unknown names and missing roots are bad input."""
    body, subset = text, None
    if "@" in text:
        body, _, count = text.rpartition("@")
        if not count.isdigit() or int(count) <= 0:
            raise BadInput(f"bad subset size in data spec '{text}': use NAME@N with N > 0")
        subset = int(count)
    name, _, root = body.partition(":")
    name = name.strip().lower()
    if name not in KNOWN_DATASETS:
        raise BadInput(
            f"unknown dataset '{name}' in data spec '{text}': known are {', '.join(KNOWN_DATASETS)}"
        )
    if name in NEEDS_ROOT and not root:
        raise BadInput(f"data spec '{text}' needs a folder: write {name}:PATH")
    return DataSpec(name=name, root=root or None, subset=subset)


def balanced_subset_indices(labels: np.ndarray, count: int, seed: int = SUBSET_SEED) -> np.ndarray:
    """Indices of ``count`` images with classes as balanced as the data allow, sorted.

    Every class gets ``count // C`` images (the first ``count % C`` classes one more); a
    class with too few images gives all it has and the rest is filled from the others.
    The draw depends only on ``labels``, ``count`` and ``seed``.
    """
    if count >= len(labels):
        return np.arange(len(labels), dtype=np.int64)
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    per_class = [rng.permutation(np.flatnonzero(labels == c)) for c in classes]
    quota = np.full(len(classes), count // len(classes))
    quota[: count % len(classes)] += 1
    taken = [members[:q] for members, q in zip(per_class, quota, strict=True)]
    missing = count - sum(len(t) for t in taken)
    if missing > 0:
        leftovers = np.concatenate(
            [members[len(t) :] for members, t in zip(per_class, taken, strict=True)]
        )
        taken.append(rng.permutation(leftovers)[:missing])
    return np.sort(np.concatenate(taken)).astype(np.int64)


def load_split(
    spec: str | DataSpec,
    split: str = "train",
    *,
    download: bool = False,
    image_size: int | None = None,
) -> ImageDataset:
    """Load one split (``train`` or ``test``) of the dataset a spec names."""
    parsed = parse_spec(spec) if isinstance(spec, str) else spec
    if split not in ("train", "test"):
        raise BadInput(f"unknown split '{split}': use train or test")
    if parsed.name == "digits":
        dataset: ImageDataset = sources.load_digits_split(split)
    elif parsed.name == "fashion-mnist":
        dataset = sources.load_fashion_mnist_split(parsed.root, split, download)
    elif parsed.name in ("cifar10", "cifar100"):
        dataset = sources.load_cifar_split(parsed.name, parsed.root, split)
    elif parsed.name == "stl10":
        dataset = sources.load_stl10_split(parsed.root, split)
    else:
        root = sources.imagefolder_split_root(Path(parsed.root).expanduser(), split)
        dataset = sources.ImageFolderDataset(root, split, str(parsed), image_size or 224)
    if parsed.subset:
        dataset = dataset.subset(balanced_subset_indices(dataset.labels, parsed.subset))
    dataset.spec = str(parsed) if parsed.name != "fashion-mnist" else _fmnist_spec(dataset, parsed)
    return dataset


def _fmnist_spec(dataset: ImageDataset, parsed: DataSpec) -> str:
    """Fashion-MNIST's spec with the folder it was actually read from."""
    found = dataset.spec  # set by the loader to fashion-mnist:<folder>
    return found + (f"@{parsed.subset}" if parsed.subset else "")
