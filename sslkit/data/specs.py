"""Data spec strings: ``NAME[:ROOT][@N][~ltR]`` -> a dataset split.

``digits``, ``fashion-mnist[:ROOT]``, ``imagefolder:PATH``, ``cifar10:ROOT``,
``cifar100:ROOT``, ``stl10:ROOT``. A suffix ``@N`` takes a reproducible class-balanced
subset of N images of each split (e.g. ``fashion-mnist@6000``).

A suffix ``~ltR`` makes the *training* split long-tailed with imbalance ratio R (largest
over smallest class, a number >= 1), as CIFAR-10/100-LT are built (Cao et al. 2019,
LDAM-DRW, used by CLD): class c of C (in label order) keeps
``n_c = floor(n_max * (1/R) ** (c / (C - 1)))`` images, where n_max is the size of the
smallest class (every class's size on balanced data such as CIFAR, where it is LDAM's
``len(data) / C``). The images kept are the first n_c of each class after LDAM's seeded
shuffle (``np.random.seed(0)``, one ``shuffle`` per class in label order), so on CIFAR
the subset is the reference's. The test split stays as it is (balanced), as in CIFAR-LT.
``@N`` is taken first (on both splits), then the long tail, whichever order the two
suffixes are written in: ``digits@1000~lt10`` keeps 100, 77, 59, ... 10 training digits.
``cifar10-lt:ROOT`` and ``cifar100-lt:ROOT`` are ``cifar10:ROOT~lt100`` and
``cifar100:ROOT~lt100`` (CLD's setting); ``cifar10-lt:ROOT~lt50`` changes the ratio. A
long-tailed spec prints as ``NAME[:ROOT][@N]~ltR``, so it never shares a name (nor a
dataset fingerprint, nor cached features) with the balanced data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from sslkit.data import sources
from sslkit.data.base import ImageDataset
from sslkit.errors import BadInput

KNOWN_DATASETS = ("digits", "fashion-mnist", "imagefolder", "cifar10", "cifar100", "stl10")
NEEDS_ROOT = ("imagefolder", "cifar10", "cifar100", "stl10")
LONG_TAIL_ALIASES = {"cifar10-lt": "cifar10", "cifar100-lt": "cifar100"}
DEFAULT_IMBALANCE = 100.0  # CIFAR-10/100-LT as in CLD (Tab. 1) and LDAM-DRW
PARTLY_UNLABELLED = ("stl10",)  # its train split is train+unlabeled: 100,000 of 105,000 are -1
SUBSET_SEED = 0
LONG_TAIL_SEED = 0  # LDAM-DRW's rand_number
_LONG_TAIL_SUFFIX = re.compile(r"~lt([^~@/]*)$", re.IGNORECASE)
_RATIO = re.compile(r"\d+(\.\d+)?")


@dataclass(frozen=True)
class DataSpec:
    """A parsed data spec: name, optional root folder, subset size and imbalance ratio."""

    name: str
    root: str | None = None
    subset: int | None = None
    imbalance: float | None = None  # ~ltR: the training split is long-tailed with ratio R

    def __str__(self) -> str:
        text = self.name + (f":{self.root}" if self.root else "")
        text += f"@{self.subset}" if self.subset else ""
        return text + (f"~lt{format_ratio(self.imbalance)}" if self.imbalance else "")


def format_ratio(ratio: float) -> str:
    """``100.0`` -> ``"100"``, ``12.5`` -> ``"12.5"`` (the R of a ``~ltR`` suffix)."""
    return str(int(ratio)) if float(ratio).is_integer() else repr(float(ratio))


def parse_spec(text: str) -> DataSpec:
    """Parse ``NAME[:ROOT][@N][~ltR]``; unknown names, missing roots, bad N or R are bad input."""
    body, subset, ratio = text, None, None
    for _ in range(2):  # ~ltR may come before or after @N
        found = _LONG_TAIL_SUFFIX.search(body)
        if found and ratio is None:
            ratio, body = _parse_ratio(found.group(1), text), body[: found.start()]
        elif "@" in body and subset is None:
            body, _, count = body.rpartition("@")
            if not count.isdigit() or int(count) <= 0:
                raise BadInput(f"bad subset size in data spec '{text}': use NAME@N with N > 0")
            subset = int(count)
    written, _, root = body.partition(":")
    written = written.strip().lower()
    name = LONG_TAIL_ALIASES.get(written, written)
    if written in LONG_TAIL_ALIASES:
        ratio = ratio or DEFAULT_IMBALANCE
    if "~" in name:
        raise BadInput(f"bad long-tail suffix in data spec '{text}': write NAME[:ROOT]~ltR "
                       "with R the imbalance ratio, e.g. digits~lt10")  # fmt: skip
    if name not in KNOWN_DATASETS:
        known = ", ".join((*KNOWN_DATASETS, *LONG_TAIL_ALIASES))
        raise BadInput(f"unknown dataset '{name}' in data spec '{text}': known are {known}")
    if name in NEEDS_ROOT and not root:
        raise BadInput(f"data spec '{text}' needs a folder: write {written}:PATH")
    if ratio is not None and name in PARTLY_UNLABELLED:
        raise BadInput(f"data spec '{text}': {name}'s training split is mostly unlabelled, so it "
                       "has no classes to make long-tailed: drop the ~lt suffix")  # fmt: skip
    return DataSpec(name=name, root=root or None, subset=subset, imbalance=ratio)


def _parse_ratio(value: str, text: str) -> float:
    """The R of ``~ltR``: a plain decimal number >= 1."""
    if not _RATIO.fullmatch(value) or float(value) < 1:
        raise BadInput(f"bad imbalance ratio '{value}' in data spec '{text}': write ~ltR with "
                       "R >= 1 (largest / smallest class), e.g. digits~lt10")  # fmt: skip
    return float(value)


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


def long_tail_counts(n_max: int, num_classes: int, ratio: float) -> list[int]:
    """CIFAR-LT's exponential profile: ``floor(n_max * (1/ratio) ** (c / (C - 1)))`` per class.

    Computed exactly as LDAM-DRW's ``get_img_num_per_cls`` (``imb_factor = 1 / ratio``), so
    CIFAR-10 with ``n_max = 5000``, ratio 100 gives 5000, 2997, 1796, ..., 83, 50.
    """
    if num_classes <= 1:
        return [int(n_max)] * num_classes
    factor = 1.0 / ratio
    return [int(n_max * factor ** (c / (num_classes - 1.0))) for c in range(num_classes)]


def long_tail_indices(labels: np.ndarray, ratio: float, seed: int = LONG_TAIL_SEED) -> np.ndarray:
    """Indices (sorted) of the long-tailed subset of ``labels`` with imbalance ``ratio``.

    Classes in label order follow :func:`long_tail_counts` with ``n_max`` the smallest
    class's size; class c keeps the first ``n_c`` of its images after a shuffle by
    ``np.random.RandomState(seed)``, one class after the other (LDAM-DRW's
    ``gen_imbalanced_data`` with ``np.random.seed(seed)``). Depends only on the inputs.
    """
    labels = np.asarray(labels)
    if len(labels) == 0 or (labels < 0).any():
        raise BadInput("a long tail (~ltR) needs every training image labelled, but some have "
                       "label -1: drop the ~lt suffix or use a labelled dataset")  # fmt: skip
    classes, sizes = np.unique(labels, return_counts=True)
    quota = long_tail_counts(int(sizes.min()), len(classes), ratio)
    if quota[-1] < 1:
        raise BadInput(f"imbalance ratio {format_ratio(ratio)} leaves the last class no image "
                       f"(the smallest class has {sizes.min()}): use a smaller R in ~ltR")
    rng = np.random.RandomState(seed)
    taken = []
    for label, count in zip(classes, quota, strict=True):
        members = np.flatnonzero(labels == label)
        rng.shuffle(members)
        taken.append(members[:count])
    return np.sort(np.concatenate(taken)).astype(np.int64)


def load_split(
    spec: str | DataSpec,
    split: str = "train",
    *,
    download: bool = False,
    image_size: int | None = None,
    skip_bad_images: bool = False,
) -> ImageDataset:
    """Load one split (``train`` or ``test``) of the dataset a spec names.

    ``@N`` subsets both splits; ``~ltR`` makes only the training split long-tailed.
    ``skip_bad_images`` leaves out image-folder files that do not decode (listed in the
    dataset's ``skipped_images``); embedded and array datasets have none.
    """
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
        dataset = sources.ImageFolderDataset(root, split, str(parsed), image_size or 224,
                                             skip_bad_images)  # fmt: skip
    if parsed.subset:
        dataset = dataset.subset(balanced_subset_indices(dataset.labels, parsed.subset))
    if parsed.imbalance and split == "train":
        dataset = dataset.subset(long_tail_indices(dataset.labels, parsed.imbalance))
    dataset.spec = str(parsed) if parsed.name != "fashion-mnist" else _fmnist_spec(dataset, parsed)
    return dataset


def _fmnist_spec(dataset: ImageDataset, parsed: DataSpec) -> str:
    """Fashion-MNIST's spec with the folder it was actually read from."""
    found = dataset.spec  # set by the loader to fashion-mnist:<folder>
    return str(replace(parsed, root=found.partition(":")[2]))
