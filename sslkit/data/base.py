"""The dataset interface every data source implements."""

from __future__ import annotations

import abc
import hashlib
from dataclasses import dataclass, field

import numpy as np
import torch

from sslkit.errors import BadInput


@dataclass(frozen=True)
class DataInfo:
    """What a method and a view pipeline need to know about a dataset.

    ``image_size`` is the side of the (square) uint8 images the loader yields;
    ``mean``/``std`` are the per-channel normalisation for 3-channel input (grayscale
    images are repeated to three channels before normalisation).
    """

    name: str
    num_classes: int
    image_size: int
    channels: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    class_names: tuple[str, ...] = field(default=(), compare=False)
    num_samples: int = field(default=0, compare=False)  # training-set size (0 = unknown)

    @classmethod
    def from_dict(cls, values: dict) -> DataInfo:
        """The info a checkpoint recorded (``dataclasses.asdict``; lists back to tuples)."""
        return cls(**{key: tuple(value) if isinstance(value, list) else value
                      for key, value in values.items()})  # fmt: skip


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ImageDataset(torch.utils.data.Dataset, abc.ABC):
    """A split of images with labels; item ``i`` is ``(uint8 CxHxW tensor, label, i)``.

    Subclasses set ``info``, ``labels`` (int64 numpy array, -1 when unknown) and
    implement ``load(i)``. In-memory datasets also set ``images`` (N x C x H x W uint8)
    so whole batches are taken by indexing, without a per-image Python loop.
    """

    info: DataInfo
    labels: np.ndarray
    images: torch.Tensor | None = None
    spec: str = ""
    split: str = "train"
    skipped_images: tuple[str, ...] = ()  # "path: reason" of images left out as unreadable

    def __len__(self) -> int:
        return len(self.labels)

    def load(self, index: int) -> torch.Tensor:
        """Return image ``index`` as a uint8 C x H x W tensor."""
        assert self.images is not None
        return self.images[index]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        return self.load(index), int(self.labels[index]), index

    def fingerprint(self) -> str:
        """A short hash that changes when the underlying data changes."""
        digest = hashlib.sha256()
        digest.update(self.source_fingerprint().encode())
        digest.update(self.split.encode())
        digest.update(np.ascontiguousarray(self.source_indices).tobytes())
        return digest.hexdigest()[:16]

    @abc.abstractmethod
    def source_fingerprint(self) -> str:
        """Hash of the source files (paths, sizes, mtimes) or of the embedded data."""

    @property
    def source_indices(self) -> np.ndarray:
        """Positions of this split's images in the full source split (identity unless subset)."""
        return np.arange(len(self.labels), dtype=np.int64)


class InMemoryDataset(ImageDataset):
    """A split held as one uint8 tensor (digits, Fashion-MNIST, CIFAR, STL-10)."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: np.ndarray,
        info: DataInfo,
        spec: str,
        split: str,
        source_hash: str,
    ) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError("images must be an N x C x H x W uint8 tensor")
        if len(images) == 0:
            raise BadInput(f"the {split} split of '{spec}' is empty: check the data files")
        self.images = images
        self.labels = np.asarray(labels, dtype=np.int64)
        self.info = info
        self.spec = spec
        self.split = split
        self._source_hash = source_hash
        self._source_indices = np.arange(len(labels), dtype=np.int64)

    def source_fingerprint(self) -> str:
        return self._source_hash

    @property
    def source_indices(self) -> np.ndarray:
        return self._source_indices

    def subset(self, indices: np.ndarray) -> InMemoryDataset:
        """A new dataset holding only ``indices`` (positions in this one)."""
        child = InMemoryDataset(
            self.images[torch.as_tensor(indices)],
            self.labels[indices],
            self.info,
            self.spec,
            self.split,
            self._source_hash,
        )
        child._source_indices = self._source_indices[indices]
        return child


def files_fingerprint(paths: list) -> str:
    """Hash of (path, size, mtime) of every file: cheap, and changes when a file changes."""
    import os

    digest = hashlib.sha256()
    for path in paths:
        stat = os.stat(path)
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()
