"""Concrete data sources: digits, Fashion-MNIST, CIFAR-10/100, STL-10, image folders."""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sslkit.data.base import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    DataInfo,
    ImageDataset,
    InMemoryDataset,
    files_fingerprint,
)
from sslkit.errors import BadInput

FASHION_MNIST_CLASSES = (
    "t-shirt/top", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle boot",
)  # fmt: skip
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def load_digits_split(split: str) -> InMemoryDataset:
    """scikit-learn's 1,797 bundled 8x8 digits, rendered as 32x32 RGB, fixed stratified split.

    The split is 75 % train / 25 % test (1,347 / 450 images), stratified by class with a
    fixed seed, so it is the same on every machine.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    pixels = digits.images.astype(np.float32) / 16.0  # N x 8 x 8 in [0, 1]
    order = np.arange(len(pixels))
    train_idx, test_idx = train_test_split(
        order, test_size=0.25, stratify=digits.target, random_state=0
    )
    idx = np.sort(train_idx if split == "train" else test_idx)
    small = torch.from_numpy(pixels[idx]).unsqueeze(1)
    big = torch.nn.functional.interpolate(small, size=32, mode="bilinear", align_corners=False)
    images = (big.clamp(0, 1) * 255).round().to(torch.uint8).expand(-1, 3, -1, -1).contiguous()
    source_hash = hashlib.sha256(digits.images.tobytes() + digits.target.tobytes()).hexdigest()
    info = DataInfo(
        name="digits",
        num_classes=10,
        image_size=32,
        channels=3,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        class_names=tuple(str(i) for i in range(10)),
    )
    return InMemoryDataset(images, digits.target[idx], info, "digits", split, source_hash)


def find_fashion_mnist(root: str | None) -> Path:
    """The folder with Fashion-MNIST's four gzipped IDX files (explicit, $SSLKIT_DATA, Debian)."""
    candidates: list[Path] = []
    if root:
        candidates.append(Path(root).expanduser())
    else:
        if os.environ.get("SSLKIT_DATA"):
            candidates.append(Path(os.environ["SSLKIT_DATA"]) / "fashion-mnist")
        candidates.append(DEBIAN_FASHION_MNIST)
    needed = [name for pair in FASHION_MNIST_FILES.values() for name in pair]
    for folder in candidates:
        if all((folder / name).is_file() for name in needed):
            return folder
        raw = folder / "FashionMNIST" / "raw"
        if all((raw / name).is_file() for name in needed):
            return raw
    looked = ", ".join(str(c) for c in candidates)
    raise BadInput(
        f"Fashion-MNIST not found (looked in {looked}): install it with "
        "'apt-get install dataset-fashion-mnist', pass 'fashion-mnist:ROOT', or add --download"
    )


def download_fashion_mnist(root: str | None) -> Path:
    """Download Fashion-MNIST with torchvision (only on an explicit --download)."""
    from torchvision.datasets import FashionMNIST

    target = Path(root or Path(os.environ.get("SSLKIT_DATA", "~/.cache/sslkit/data")).expanduser())
    target = target.expanduser()
    FashionMNIST(str(target), train=True, download=True)
    FashionMNIST(str(target), train=False, download=True)
    return target / "FashionMNIST" / "raw"


def read_idx(path: Path) -> np.ndarray:
    """Read a gzipped IDX file (the MNIST format) into a numpy array."""
    try:
        with gzip.open(path, "rb") as handle:
            data = handle.read()
        magic, = struct.unpack(">I", data[:4])
        ndim = magic & 0xFF
        dims = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
        array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
        return array.reshape(dims)
    except (OSError, ValueError, struct.error) as exc:
        raise BadInput(f"corrupt IDX file {path}: {exc}; reinstall the dataset") from exc


def load_fashion_mnist_split(root: str | None, split: str, download: bool) -> InMemoryDataset:
    """Fashion-MNIST's 60,000 / 10,000 real 28x28 grayscale images."""
    try:
        folder = find_fashion_mnist(root)
    except BadInput:
        if not download:
            raise
        folder = download_fashion_mnist(root)
    image_file, label_file = (folder / name for name in FASHION_MNIST_FILES[split])
    images = torch.from_numpy(read_idx(image_file).copy()).unsqueeze(1)
    labels = read_idx(label_file).astype(np.int64)
    if len(images) != len(labels):
        raise BadInput(f"{image_file} and {label_file} disagree on the number of images")
    info = DataInfo(
        name="fashion-mnist",
        num_classes=10,
        image_size=28,
        channels=1,
        mean=(0.286, 0.286, 0.286),
        std=(0.353, 0.353, 0.353),
        class_names=FASHION_MNIST_CLASSES,
    )
    spec = f"fashion-mnist:{folder}"
    return InMemoryDataset(
        images, labels, info, spec, split, files_fingerprint([image_file, label_file])
    )


def load_cifar_split(name: str, root: str, split: str) -> InMemoryDataset:
    """CIFAR-10 / CIFAR-100 from the python release under ROOT (no download)."""
    from torchvision.datasets import CIFAR10, CIFAR100

    cls = CIFAR10 if name == "cifar10" else CIFAR100
    try:
        dataset = cls(root, train=(split == "train"), download=False)
    except RuntimeError as exc:
        raise BadInput(
            f"{name} not found under {root}: expected the python release "
            f"({cls.base_folder}/) there; download it once and pass {name}:ROOT"
        ) from exc
    folder = Path(root) / cls.base_folder
    images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()
    info = DataInfo(
        name=name,
        num_classes=len(dataset.classes),
        image_size=32,
        channels=3,
        mean=(0.4914, 0.4822, 0.4465),
        std=(0.2023, 0.1994, 0.2010),
        class_names=tuple(dataset.classes),
    )
    files = sorted(p for p in folder.iterdir() if p.is_file())
    return InMemoryDataset(
        images, np.asarray(dataset.targets), info, f"{name}:{root}", split,
        files_fingerprint(files),
    )  # fmt: skip


def load_stl10_split(root: str, split: str) -> InMemoryDataset:
    """STL-10 from the binary release under ROOT; 'train' means train+unlabeled (105k)."""
    from torchvision.datasets import STL10

    stl_split = {"train": "train+unlabeled", "test": "test"}[split]
    try:
        dataset = STL10(root, split=stl_split, download=False)
    except RuntimeError as exc:
        raise BadInput(
            f"STL-10 not found under {root}: expected {STL10.base_folder}/ with the binary "
            "release; download it once and pass stl10:ROOT"
        ) from exc
    folder = Path(root) / STL10.base_folder
    info = DataInfo(
        name="stl10",
        num_classes=10,
        image_size=96,
        channels=3,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        class_names=tuple(dataset.classes),
    )
    files = sorted(p for p in folder.iterdir() if p.is_file())
    return InMemoryDataset(
        torch.from_numpy(dataset.data), dataset.labels.astype(np.int64), info,
        f"stl10:{root}", split, files_fingerprint(files),
    )  # fmt: skip


IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


class ImageFolderDataset(ImageDataset):
    """Images in class sub-folders (``ROOT/<class>/<image>``), decoded on demand.

    Each image is converted to RGB (grayscale, CMYK, 16-bit and alpha images included),
    its shorter side resized to ``image_size`` and centre-cropped to a square, so batches
    have one shape. Random crops are then taken from that square by the view pipeline
    (a deviation from ImageNet recipes that crop the full-resolution image: documented).

    With ``skip_bad_images`` every file is decoded once up front and those that cannot be
    (corrupt, truncated, zero-byte) are left out and listed in ``skipped_images``;
    otherwise the first unreadable image stops the command when it is reached.
    """

    def __init__(self, root: Path, split: str, spec: str, image_size: int,
                 skip_bad_images: bool = False) -> None:  # fmt: skip
        self.root = root
        self.split = split
        self.spec = spec
        if not root.is_dir():
            raise BadInput(f"image folder {root} does not exist: pass an existing folder")
        classes = sorted(d.name for d in root.iterdir() if d.is_dir())
        if not classes:
            raise BadInput(f"{root} has no class sub-folders: expected ROOT/<class>/<image>")
        paths: list[Path] = []
        labels: list[int] = []
        for label, name in enumerate(classes):
            files = sorted(
                p for p in (root / name).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS
            )
            if not files:
                raise BadInput(
                    f"class folder {root / name} has no images: remove it or add images"
                )
            paths.extend(files)
            labels.extend([label] * len(files))
        if skip_bad_images:
            paths, labels = self._readable(paths, labels)
        self.paths = paths
        self.labels = np.asarray(labels, dtype=np.int64)
        self.info = DataInfo(
            name="imagefolder",
            num_classes=len(classes),
            image_size=image_size,
            channels=3,
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            class_names=tuple(classes),
        )
        self._indices = np.arange(len(paths), dtype=np.int64)

    def _readable(self, paths: list[Path], labels: list[int]) -> tuple[list[Path], list[int]]:
        """The images that decode, and the rest recorded in ``skipped_images``."""
        kept_paths, kept_labels, skipped = [], [], []
        for path, label in zip(paths, labels, strict=True):
            try:
                decode_rgb8(path)
            except BadInput as exc:
                skipped.append(f"{path}: {exc.__cause__.__class__.__name__}")
                continue
            kept_paths.append(path)
            kept_labels.append(label)
        if not kept_paths:
            raise BadInput(f"no image under {self.root} can be decoded ({len(skipped)} "
                           "unreadable files): check the folder")  # fmt: skip
        self.skipped_images = tuple(skipped)
        return kept_paths, kept_labels

    def load(self, index: int) -> torch.Tensor:
        from torchvision.transforms.functional import center_crop, pil_to_tensor, resize

        image = decode_rgb8(self.paths[index])
        tensor = pil_to_tensor(image)
        size = self.info.image_size
        tensor = resize(tensor, size, antialias=True)
        return center_crop(tensor, [size, size])

    def source_fingerprint(self) -> str:
        return files_fingerprint(self.paths)

    @property
    def source_indices(self) -> np.ndarray:
        return self._indices

    def subset(self, indices: np.ndarray) -> ImageFolderDataset:
        """A new dataset holding only ``indices`` (positions in this one)."""
        child = object.__new__(ImageFolderDataset)
        child.__dict__.update(self.__dict__)
        child.paths = [self.paths[i] for i in indices]
        child.labels = self.labels[indices]
        child._indices = self._indices[indices]
        return child


def imagefolder_split_root(path: Path, split: str) -> Path:
    """``PATH/train`` and ``PATH/test`` (or ``PATH/val``); a flat PATH is the train split."""
    if (path / "train").is_dir():
        if split == "train":
            return path / "train"
        for name in ("test", "val"):
            if (path / name).is_dir():
                return path / name
        raise BadInput(f"{path} has train/ but no test/ or val/ folder for the test split")
    if split == "train":
        return path
    raise BadInput(
        f"{path} has no train/ and test/ sub-folders, so it has no test split: "
        "lay it out as PATH/train/<class>/... and PATH/test/<class>/..."
    )


def decode_rgb8(path: Path) -> Any:
    """Decode an image file to 8-bit RGB; an unreadable file is bad input naming it."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return to_rgb8(image)
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise BadInput(
            f"cannot read image {path} ({exc.__class__.__name__}): fix or remove the file, "
            "or pass --skip-bad-images"
        ) from exc


def to_rgb8(image: Any) -> Any:
    """A PIL image as 8-bit RGB; 16- and 32-bit grey images are rescaled, not clipped at 255."""
    from PIL import Image

    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        pixels = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or pixels.max() > 255 else 255.0
        pixels = np.clip(pixels / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        image = Image.fromarray(pixels, mode="L")
    return image.convert("RGB")
