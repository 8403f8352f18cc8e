"""PASCAL VOC 2007 classification from the standard VOCdevkit layout (multi-label).

``ROOT`` may be ``VOCdevkit/VOC2007`` itself, the folder holding ``VOCdevkit/``, or a
folder holding ``VOC2007/``. Inside ``VOC2007/``::

    JPEGImages/<id>.jpg
    Annotations/<id>.xml                         (only needed without the class files)
    ImageSets/Main/{train,val,trainval,test}.txt
    ImageSets/Main/<class>_<split>.txt           "<id> <label>", label in {1, 0, -1}

Per image and class the label is 1 (present), -1 (absent) or 0 (present only as a
"difficult" object), as the per-class files give it; without them the XML annotations
give the same values (1 if any non-difficult object of the class, 0 if only difficult
ones, -1 otherwise). Image ``i`` of a split is the ``i``-th line of ``<split>.txt``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from sslkit.data.base import IMAGENET_MEAN, IMAGENET_STD, DataInfo, ImageDataset, files_fingerprint
from sslkit.errors import BadInput

#: The 20 VOC classes in the standard order (the devkit's, PCL's and HCSC's).
VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)  # fmt: skip
VOC_SPLITS = ("train", "val", "trainval", "test")


def find_voc2007(root: str | Path) -> Path:
    """The ``VOC2007`` folder under ``root`` (itself, ``VOC2007/`` or ``VOCdevkit/VOC2007/``)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise BadInput(f"VOC root {root} does not exist: pass the folder that holds "
                       "VOCdevkit/VOC2007")  # fmt: skip
    for candidate in (root, root / "VOC2007", root / "VOCdevkit" / "VOC2007"):
        if (candidate / "JPEGImages").is_dir() and (candidate / "ImageSets").is_dir():
            return candidate
    raise BadInput(f"no VOC2007 layout under {root} (JPEGImages/ and ImageSets/Main/ not "
                   "found): pass the folder that holds VOCdevkit/VOC2007")  # fmt: skip


def read_split_ids(voc: Path, split: str) -> list[str]:
    """Image ids of a split, in the order of ``ImageSets/Main/<split>.txt``."""
    if split not in VOC_SPLITS:
        raise BadInput(f"unknown VOC split '{split}': use {', '.join(VOC_SPLITS)}")
    path = voc / "ImageSets" / "Main" / f"{split}.txt"
    if not path.is_file():
        hint = " (it comes with VOCtest_06-Nov-2007.tar)" if split == "test" else ""
        raise BadInput(f"{path} not found: the VOC2007 {split} split needs "
                       f"ImageSets/Main/{split}.txt{hint}")  # fmt: skip
    ids = [line.split()[0] for line in path.read_text().splitlines() if line.strip()]
    if not ids:
        raise BadInput(f"{path} lists no images: restore the VOC2007 split file")
    return ids


def class_file_labels(voc: Path, split: str, ids: list[str]) -> tuple[np.ndarray, list[Path]]:
    """The ``N x 20`` {1, 0, -1} matrix from the per-class files, and the files read."""
    files = [voc / "ImageSets" / "Main" / f"{name}_{split}.txt" for name in VOC_CLASSES]
    position = {image_id: row for row, image_id in enumerate(ids)}
    labels = np.full((len(ids), len(VOC_CLASSES)), 2, dtype=np.int8)  # 2 = not given
    for column, path in enumerate(files):
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] in position:
                labels[position[parts[0]], column] = int(parts[-1])
    missing = np.argwhere(labels == 2)
    if len(missing):
        row, column = missing[0]
        raise BadInput(f"{files[column]} has no label for image {ids[row]}: restore the "
                       "VOC2007 class files or remove them to use Annotations/")  # fmt: skip
    if not np.isin(labels, (-1, 0, 1)).all():
        raise BadInput(f"labels in ImageSets/Main/*_{split}.txt must be 1, 0 or -1: "
                       "restore the VOC2007 class files")  # fmt: skip
    return labels, files


def parse_annotation(path: Path) -> list[tuple[str, bool]]:
    """``(class name, difficult)`` of every object in one VOC XML annotation."""
    import xml.etree.ElementTree as ET

    try:
        tree = ET.parse(path)
    except (OSError, ET.ParseError) as exc:
        raise BadInput(f"cannot read annotation {path} ({exc.__class__.__name__}): "
                       "restore the file from the VOC2007 archive") from exc  # fmt: skip
    objects = []
    for item in tree.getroot().iter("object"):
        name = (item.findtext("name") or "").strip()
        difficult = (item.findtext("difficult") or "0").strip()
        objects.append((name, difficult not in ("", "0")))
    return objects


def annotation_labels(voc: Path, ids: list[str]) -> tuple[np.ndarray, list[Path]]:
    """The ``N x 20`` {1, 0, -1} matrix from ``Annotations/<id>.xml`` (difficult -> 0)."""
    labels = np.full((len(ids), len(VOC_CLASSES)), -1, dtype=np.int8)
    files = [voc / "Annotations" / f"{image_id}.xml" for image_id in ids]
    for row, path in enumerate(files):
        if not path.is_file():
            raise BadInput(f"{path} not found and the per-class label files are missing: "
                           "add ImageSets/Main/<class>_<split>.txt or Annotations/")  # fmt: skip
        for name, difficult in parse_annotation(path):
            if name not in VOC_CLASSES:
                raise BadInput(f"unknown class '{name}' in {path}: VOC uses "
                               f"{', '.join(VOC_CLASSES)}")  # fmt: skip
            column = VOC_CLASSES.index(name)
            labels[row, column] = max(labels[row, column], 0 if difficult else 1)
    return labels, files


def voc_labels(voc: Path, split: str, ids: list[str]) -> tuple[np.ndarray, list[Path]]:
    """Labels from the per-class files when all 20 exist, else from the XML annotations."""
    main = voc / "ImageSets" / "Main"
    if all((main / f"{name}_{split}.txt").is_file() for name in VOC_CLASSES):
        return class_file_labels(voc, split, ids)
    return annotation_labels(voc, ids)


def load_resized_image(path: Path, size: int, resize: int, squash: bool = False) -> torch.Tensor:
    """An image as uint8 RGB ``3 x size x size``.

    ``squash=False``: the shorter side resized to ``resize``, then the centre
    ``size x size`` crop (``Resize(resize)`` -> ``CenterCrop(size)``); ``squash=True``:
    resized to ``size x size`` ignoring the aspect ratio (``Resize((size, size))``).
    """
    from PIL import Image, UnidentifiedImageError
    from torchvision.transforms.functional import center_crop, pil_to_tensor
    from torchvision.transforms.functional import resize as scale

    from sslkit.data.sources import to_rgb8

    try:
        with Image.open(path) as image:
            image = to_rgb8(image)
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise BadInput(f"cannot read image {path} ({exc.__class__.__name__}): "
                       "fix or remove the file") from exc  # fmt: skip
    tensor = pil_to_tensor(image)
    if squash:
        return scale(tensor, [size, size], antialias=True)
    return center_crop(scale(tensor, resize, antialias=True), [size, size])


class VOC07Dataset(ImageDataset):
    """One VOC2007 split as a multi-label image dataset, decoded on demand.

    ``labels`` are all -1 (no single label exists); the per-class {1, 0, -1} matrix is
    :attr:`targets` and the multi-hot of present, non-difficult classes is
    :meth:`multi_hot`. Images are ``image_size`` squares: the shorter side resized to
    ``resize`` (default ``image_size``) and centre-cropped, like ``ImageFolderDataset``,
    or squashed to the square with ``squash=True`` (HCSC's ``Resize((300, 300))``).
    """

    def __init__(self, root: str | Path, split: str, image_size: int = 224,
                 resize: int | None = None, squash: bool = False) -> None:  # fmt: skip
        self.voc = find_voc2007(root)
        self.split = split
        self.spec = f"voc07:{Path(root).expanduser()}"
        self.image_ids = read_split_ids(self.voc, split)
        self.targets, self._label_files = voc_labels(self.voc, split, self.image_ids)
        self.paths = [self.voc / "JPEGImages" / f"{i}.jpg" for i in self.image_ids]
        self.labels = np.full(len(self.image_ids), -1, dtype=np.int64)
        self.resize = resize or image_size
        self.squash = squash
        self.info = DataInfo(name="voc07", num_classes=len(VOC_CLASSES), image_size=image_size,
                             channels=3, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                             class_names=VOC_CLASSES)  # fmt: skip
        self._fingerprint: str | None = None

    def load(self, index: int) -> torch.Tensor:
        """Image ``index`` as a uint8 ``3 x image_size x image_size`` tensor."""
        return load_resized_image(self.paths[index], self.info.image_size, self.resize,
                                  self.squash)  # fmt: skip

    def multi_hot(self) -> np.ndarray:
        """``N x 20`` float32: 1 where a non-difficult object of the class is present."""
        return (self.targets == 1).astype(np.float32)

    def geometry(self) -> str:
        """How images are resized (part of the fingerprint: it changes the pixels)."""
        size = self.info.image_size
        return f"squash{size}" if self.squash else f"resize{self.resize}+crop{size}"

    def source_fingerprint(self) -> str:
        """Paths, sizes and mtimes of the images and label files, plus the geometry."""
        if self._fingerprint is None:
            try:
                files = files_fingerprint([*self.paths, *self._label_files])
            except FileNotFoundError as exc:
                missing = exc.filename
                raise BadInput(f"{missing} not found: the VOC2007 {self.split} split lists "
                               "an image missing from JPEGImages/") from exc  # fmt: skip
            self._fingerprint = f"{files}:{self.geometry()}"
        return self._fingerprint

    def describe(self) -> dict[str, Any]:
        """Sizes and label counts for JSON results."""
        return {"split": self.split, "images": len(self), "folder": str(self.voc),
                "positives": int((self.targets == 1).sum()),
                "difficult": int((self.targets == 0).sum())}  # fmt: skip
