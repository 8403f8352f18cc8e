"""Places205 (the 256 x 256 release) from its split files.

Layout under ``ROOT`` (as HCSC's ``eval_lincls_places.py`` reads it)::

    trainvalsplit_places205/train_places205.csv    "<relative path> <label>" per line
    trainvalsplit_places205/val_places205.csv
    data/vision/torralba/deeplearning/images256/<relative path>

The images may instead sit directly in ``ROOT/images256/``. Lines may separate the path
and the 0-based label by white space (the release) or a comma.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from sslkit.data.base import IMAGENET_MEAN, IMAGENET_STD, DataInfo, ImageDataset, files_fingerprint
from sslkit.data.voc import load_resized_image
from sslkit.errors import BadInput

PLACES_SPLITS = ("train", "val")
PLACES_IMAGE_DIRS = (Path("data/vision/torralba/deeplearning/images256"), Path("images256"))
SPLIT_DIR = "trainvalsplit_places205"


def find_places_images(root: Path) -> Path:
    """The images folder: ``data/vision/torralba/deeplearning/images256`` or ``images256``
    under ``root``."""
    for relative in PLACES_IMAGE_DIRS:
        if (root / relative).is_dir():
            return root / relative
    raise BadInput(f"no Places205 images under {root}: expected "
                   f"{PLACES_IMAGE_DIRS[0]}/ or images256/ there")  # fmt: skip


def read_places_split(path: Path) -> tuple[list[str], np.ndarray]:
    """Relative paths and int64 labels of a split file (``path label`` or ``path,label``)."""
    if not path.is_file():
        raise BadInput(f"{path} not found: Places205 needs {SPLIT_DIR}/train_places205.csv "
                       "and val_places205.csv under ROOT")  # fmt: skip
    paths, labels = [], []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        parts = line.rsplit(",", 1) if "," in line else line.rsplit(None, 1)
        try:
            paths.append(parts[0].strip())
            labels.append(int(parts[1]))
        except (IndexError, ValueError):
            raise BadInput(f"{path} line {number} is not '<relative path> <label>': "
                           "restore the Places205 split file") from None  # fmt: skip
    if not paths:
        raise BadInput(f"{path} lists no images: restore the Places205 split file")
    if min(labels) < 0:
        raise BadInput(f"{path} has a negative label: labels are 0-based class indices")
    return paths, np.asarray(labels, dtype=np.int64)


def category_name(relative: str) -> str:
    """``a/abbey/x.jpg`` -> ``abbey``; ``c/church/outdoor/x.jpg`` -> ``church/outdoor``."""
    parts = Path(relative).parts[:-1]
    if len(parts) > 1 and len(parts[0]) == 1:
        parts = parts[1:]
    return "/".join(parts)


class Places205Dataset(ImageDataset):
    """One Places205 split (``train`` or ``val``), decoded on demand.

    Images are ``image_size`` squares: the shorter side resized to ``resize`` (default
    ``image_size``), then centre-cropped. The class names come from the category folders
    of the split's paths (label ``c`` is named after its first image).
    """

    def __init__(self, root: str | Path, split: str, image_size: int = 224,
                 resize: int | None = None) -> None:  # fmt: skip
        if split not in PLACES_SPLITS:
            raise BadInput(f"unknown Places205 split '{split}': use train or val")
        root = Path(root).expanduser()
        if not root.is_dir():
            raise BadInput(f"Places205 root {root} does not exist: pass the folder that "
                           f"holds {SPLIT_DIR}/")  # fmt: skip
        self.root = root
        self.split = split
        self.spec = f"places205:{root}"
        self.split_file = root / SPLIT_DIR / f"{split}_places205.csv"
        relative, self.labels = read_places_split(self.split_file)
        images = find_places_images(root)
        self.paths = [images / name for name in relative]
        self.resize = resize or image_size
        names = [""] * (int(self.labels.max()) + 1)
        for name, label in zip(relative, self.labels, strict=True):
            names[label] = names[label] or category_name(name)
        class_names = tuple(name or str(label) for label, name in enumerate(names))
        self.info = DataInfo(name="places205", num_classes=len(names), image_size=image_size,
                             channels=3, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                             class_names=class_names)  # fmt: skip
        self._fingerprint: str | None = None

    def load(self, index: int) -> torch.Tensor:
        """Image ``index`` as a uint8 ``3 x image_size x image_size`` tensor."""
        return load_resized_image(self.paths[index], self.info.image_size, self.resize)

    def source_fingerprint(self) -> str:
        """Paths, sizes and mtimes of the images and the split file, plus the geometry."""
        if self._fingerprint is None:
            try:
                files = files_fingerprint([*self.paths, self.split_file])
            except FileNotFoundError as exc:
                raise BadInput(f"{exc.filename} not found: {self.split_file.name} lists an "
                               "image that is missing from the images folder") from exc  # fmt: skip
            self._fingerprint = f"{files}:resize{self.resize}+crop{self.info.image_size}"
        return self._fingerprint

    def describe(self) -> dict[str, Any]:
        """Sizes for JSON results."""
        return {"split": self.split, "images": len(self), "classes": self.info.num_classes,
                "split_file": str(self.split_file)}  # fmt: skip
