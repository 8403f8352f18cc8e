"""Tiny on-disk VOC2007 and Places205 layouts made of upscaled scikit-learn digits.

Each image shows one digit whose class decides the image's main label, so features of
the digits checkpoint separate the classes. Written as JPEGs (40 x 32, the digit centred
on black) in the releases' folder layouts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from sslkit.data.voc import VOC_CLASSES

#: VOC class -> digit shown; 10 images each: ids 0..39 as ``0000NN``.
VOC_DIGITS = {"aeroplane": 0, "cat": 1, "dog": 7, "person": 4}
VOC_SPLIT_IDS = {
    "train": [i for i in range(40) if i % 10 < 3],  # 12
    "val": [i for i in range(40) if 3 <= i % 10 < 5],  # 8
    "test": [i for i in range(40) if i % 10 >= 5],  # 20
}
VOC_SPLIT_IDS["trainval"] = sorted(VOC_SPLIT_IDS["train"] + VOC_SPLIT_IDS["val"])
#: Extra objects: (image, class, difficult). Image 2 (aeroplane) also holds a person,
#: image 5's only object is difficult, image 15 (cat) adds a difficult dog, 25 (dog) a
#: difficult cat.
EXTRA_OBJECTS = [(2, "person", False), (15, "dog", True), (25, "cat", True)]
DIFFICULT_MAIN = {5}
PLACES_CLASSES = {"a/abbey": 0, "b/beach": 1, "c/church/outdoor": 7}


def digit_images(digit: int, count: int, offset: int = 0) -> list[np.ndarray]:
    """``count`` 32 x 40 x 3 uint8 images of ``digit`` (the digit centred on black)."""
    from sslkit.data.sources import load_digits_split

    data = load_digits_split("train")
    chosen = np.flatnonzero(data.labels == digit)[offset : offset + count]
    out = []
    for index in chosen:
        tile = data.images[index].permute(1, 2, 0).numpy()
        canvas = np.zeros((32, 40, 3), dtype=np.uint8)
        canvas[:, 4:36] = tile
        out.append(canvas)
    return out


def voc_objects(image: int) -> list[tuple[str, bool]]:
    """The ``(class, difficult)`` objects of fixture image ``image``."""
    main = list(VOC_DIGITS)[image // 10]
    objects = [(main, image in DIFFICULT_MAIN)]
    return objects + [(name, hard) for i, name, hard in EXTRA_OBJECTS if i == image]


def expected_voc_labels(image: int) -> np.ndarray:
    """The {1, 0, -1} row the VOC devkit would give fixture image ``image``."""
    row = np.full(len(VOC_CLASSES), -1, dtype=np.int8)
    for name, difficult in voc_objects(image):
        column = VOC_CLASSES.index(name)
        row[column] = max(row[column], 0 if difficult else 1)
    return row


def write_voc2007(root: Path, class_files: bool = True, annotations: bool = True) -> Path:
    """Write ``root/VOCdevkit/VOC2007`` (40 images); returns ``root``."""
    voc = root / "VOCdevkit" / "VOC2007"
    for folder in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (voc / folder).mkdir(parents=True, exist_ok=True)
    images = [img for digit in VOC_DIGITS.values() for img in digit_images(digit, 10)]
    for image, pixels in enumerate(images):
        Image.fromarray(pixels).save(voc / "JPEGImages" / f"{image:06d}.jpg", quality=95)
        if annotations:
            objects = "".join(
                f"<object><name>{name}</name><pose>Unspecified</pose><truncated>0</truncated>"
                f"<difficult>{int(hard)}</difficult><bndbox><xmin>5</xmin><ymin>1</ymin>"
                f"<xmax>35</xmax><ymax>31</ymax></bndbox></object>"
                for name, hard in voc_objects(image)
            )
            xml = (f"<annotation><folder>VOC2007</folder><filename>{image:06d}.jpg</filename>"
                   f"<size><width>40</width><height>32</height><depth>3</depth></size>"
                   f"{objects}</annotation>")  # fmt: skip
            (voc / "Annotations" / f"{image:06d}.xml").write_text(xml)
    main = voc / "ImageSets" / "Main"
    for split, ids in VOC_SPLIT_IDS.items():
        (main / f"{split}.txt").write_text("".join(f"{i:06d}\n" for i in ids))
        if not class_files:
            continue
        for column, name in enumerate(VOC_CLASSES):
            lines = [f"{i:06d} {int(expected_voc_labels(i)[column]):2d}\n" for i in ids]
            (main / f"{name}_{split}.txt").write_text("".join(lines))
    return root


def write_places205(root: Path, images_dir: str = "data/vision/torralba/deeplearning/images256",
                    separator: str = " ") -> Path:  # fmt: skip
    """Write a 3-class Places205 layout: 10 train and 5 val images per class; returns root."""
    images = root / images_dir
    splits = root / "trainvalsplit_places205"
    splits.mkdir(parents=True, exist_ok=True)
    lines: dict[str, list[str]] = {"train": [], "val": []}
    for label, (category, digit) in enumerate(PLACES_CLASSES.items()):
        (images / category).mkdir(parents=True, exist_ok=True)
        for i, pixels in enumerate(digit_images(digit, 15, offset=20)):
            name = f"{category}/gsun_{digit}_{i:02d}.jpg"
            Image.fromarray(pixels).save(images / name, quality=95)
            lines["train" if i < 10 else "val"].append(f"{name}{separator}{label}\n")
    for split, rows in lines.items():
        (splits / f"{split}_places205.csv").write_text("".join(rows))
    return root
