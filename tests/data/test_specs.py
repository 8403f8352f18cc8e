"""Data specs, balanced subsets, the bundled digits and image folders."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from PIL import Image

from sslkit.data.loader import iterate_images
from sslkit.data.specs import DataSpec, balanced_subset_indices, load_split, parse_spec
from sslkit.errors import BadInput


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("digits", DataSpec("digits")),
        ("digits@100", DataSpec("digits", None, 100)),
        ("fashion-mnist", DataSpec("fashion-mnist")),
        ("fashion-mnist:/data/fm@6000", DataSpec("fashion-mnist", "/data/fm", 6000)),
        ("imagefolder:/x/y", DataSpec("imagefolder", "/x/y")),
        ("CIFAR10:/r", DataSpec("cifar10", "/r")),
        ("stl10:C:/data", DataSpec("stl10", "C:/data")),
    ],
)
def test_parse_spec_ok(text, expected):
    """NAME[:ROOT][@N] parses into name (lower-cased), root and subset size."""
    assert parse_spec(text) == expected


def test_spec_str_round_trip():
    """str(DataSpec) gives back a spec string that parses to the same spec."""
    for text in ("digits", "digits@10", "imagefolder:/x/y@5", "cifar100:/r"):
        assert str(parse_spec(text)) == text
        assert parse_spec(str(parse_spec(text))) == parse_spec(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("mnist", "unknown dataset 'mnist'"),
        ("", "unknown dataset ''"),
        ("imagefolder", "needs a folder"),
        ("cifar10", "needs a folder"),
        ("stl10:", "needs a folder"),
        ("digits@0", "bad subset size"),
        ("digits@-5", "bad subset size"),
        ("digits@ten", "bad subset size"),
        ("digits@", "bad subset size"),
        ("digits@1.5", "bad subset size"),
    ],
)
def test_parse_spec_bad(text, message):
    """Unknown names, missing roots and bad @N are bad input with a helpful message."""
    with pytest.raises(BadInput, match=re.escape(message)):
        parse_spec(text)


def _labels() -> np.ndarray:
    return np.random.default_rng(1).permutation(np.repeat([0, 1, 2], 10))


def test_balanced_subset_counts_sorted_unique():
    """7 of 3 classes: 3, 2, 2 (first class gets the extra one), sorted, no repeats."""
    labels = _labels()
    chosen = balanced_subset_indices(labels, 7)
    assert chosen.dtype == np.int64 and len(chosen) == 7
    assert np.array_equal(chosen, np.sort(chosen)) and len(set(chosen)) == 7
    assert np.bincount(labels[chosen]).tolist() == [3, 2, 2]


def test_balanced_subset_reproducible_and_seeded():
    """The same labels, count and seed give the same subset; another seed another one."""
    labels = _labels()
    assert np.array_equal(balanced_subset_indices(labels, 9), balanced_subset_indices(labels, 9))
    draws = {tuple(balanced_subset_indices(labels, 9, seed=s)) for s in range(5)}
    assert len(draws) > 1


def test_balanced_subset_small_class_filled_from_others():
    """A class with too few images gives them all; the rest comes from the other classes."""
    labels = np.array([0] * 2 + [1] * 20)
    chosen = balanced_subset_indices(labels, 10)
    assert len(chosen) == 10 and len(set(chosen)) == 10
    assert np.bincount(labels[chosen]).tolist() == [2, 8]


def test_balanced_subset_larger_than_data_is_everything():
    """Asking for at least N images returns all of them in order."""
    labels = _labels()
    assert np.array_equal(balanced_subset_indices(labels, 30), np.arange(30))
    assert np.array_equal(balanced_subset_indices(labels, 99), np.arange(30))


@pytest.fixture(scope="module")
def digits():
    """The bundled digits' train and test splits."""
    return load_split("digits", "train"), load_split("digits", "test")


def test_digits_split_sizes_and_images(digits):
    """1,347 train / 450 test images, uint8 3x32x32, labels 0..9."""
    train, test = digits
    assert (len(train), len(test)) == (1347, 450)
    for split in digits:
        assert split.images.dtype == torch.uint8 and split.images.shape[1:] == (3, 32, 32)
        assert split.labels.dtype == np.int64 and set(split.labels.tolist()) == set(range(10))
        assert split.info.num_classes == 10 and split.info.image_size == 32
    assert train.spec == "digits" and train.split == "train" and test.split == "test"
    assert train.images.max() > 200 and train.images.min() == 0
    assert torch.equal(train.images[:, 0], train.images[:, 2])  # gray repeated in RGB


def test_digits_split_is_stratified(digits):
    """Each class is split about 3:1, and the two splits together are all 1,797 digits."""
    from sklearn.datasets import load_digits

    train, test = digits
    total = np.bincount(load_digits().target, minlength=10)
    train_counts, test_counts = (np.bincount(s.labels, minlength=10) for s in digits)
    assert np.array_equal(train_counts + test_counts, total)
    assert np.all(np.abs(test_counts - total * 0.25) <= 1)
    assert train.fingerprint() != test.fingerprint()


def test_digits_subset_is_balanced(digits):
    """digits@100 gives 10 images of each class."""
    subset = load_split("digits@100", "train")
    assert len(subset) == 100 and subset.spec == "digits@100"
    assert np.bincount(subset.labels).tolist() == [10] * 10
    assert np.array_equal(subset.images[0], digits[0].images[subset.source_indices[0]])


def _save(path, image: Image.Image, **kwargs) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **kwargs)


@pytest.fixture
def folder(tmp_path):
    """Two classes of images in five PIL modes and three shapes."""
    root = tmp_path / "imgs"
    _save(root / "cat" / "rgb.png", Image.new("RGB", (20, 12), (200, 10, 30)))
    _save(root / "cat" / "gray.png", Image.new("L", (12, 12), 90))
    _save(root / "cat" / "nested" / "alpha.png", Image.new("RGBA", (12, 20), (0, 0, 255, 128)))
    _save(root / "dog" / "cmyk.jpg", Image.new("CMYK", (16, 16), (0, 255, 255, 0)))
    sixteen = Image.fromarray(np.full((14, 14), 40000, dtype=np.uint16))
    assert sixteen.mode == "I;16"
    _save(root / "dog" / "deep.png", sixteen)
    (root / "dog" / "notes.txt").write_text("not an image")
    return root


def test_imagefolder_loads_every_mode_as_rgb(folder):
    """Every image (RGB, L, RGBA, CMYK, 16-bit) loads as uint8 3 x size x size."""
    dataset = load_split(f"imagefolder:{folder}", "train", image_size=8)
    assert len(dataset) == 5 and dataset.labels.tolist() == [0, 0, 0, 1, 1]
    assert dataset.info.class_names == ("cat", "dog") and dataset.info.num_classes == 2
    assert dataset.images is None  # decoded on demand
    for index in range(len(dataset)):
        image, label, position = dataset[index]
        assert image.dtype == torch.uint8 and image.shape == (3, 8, 8)
        assert (label, position) == (dataset.labels[index], index)
    names = [p.name for p in dataset.paths]
    gray = dataset.load(names.index("gray.png"))
    assert (gray == 90).all()
    red = dataset.load(names.index("rgb.png"))
    assert red[:, 4, 4].tolist() == [200, 10, 30]
    cmyk = dataset.load(names.index("cmyk.jpg"))
    assert cmyk[0].float().mean() > 200 and cmyk[1:].float().mean() < 50  # CMYK red -> RGB red


def test_imagefolder_batches_through_dataloader(folder):
    """iterate_images decodes the folder in batches with a DataLoader."""
    dataset = load_split(f"imagefolder:{folder}", "train", image_size=8)
    batches = list(iterate_images(dataset, [np.array([0, 1, 2]), np.array([3, 4])]))
    assert [tuple(images.shape) for images, _ in batches] == [(3, 3, 8, 8), (2, 3, 8, 8)]
    assert torch.cat([index for _, index in batches]).tolist() == [0, 1, 2, 3, 4]


def test_imagefolder_sixteen_bit_keeps_contrast(tmp_path):
    """A 16-bit image with a dark and a bright half stays dark and bright in 8 bits."""
    pixels = np.full((8, 8), 0x1000, dtype=np.uint16)
    pixels[:, 4:] = 0xF000
    _save(tmp_path / "a" / "deep.png", Image.fromarray(pixels))
    image = load_split(f"imagefolder:{tmp_path}", "train", image_size=8).load(0)
    assert image[:, :, 0].float().mean() < 64 and image[:, :, 7].float().mean() > 192


def test_imagefolder_train_test_layout(tmp_path):
    """ROOT/train and ROOT/val are the train and test splits."""
    _save(tmp_path / "train" / "a" / "1.png", Image.new("RGB", (8, 8)))
    _save(tmp_path / "val" / "a" / "2.png", Image.new("RGB", (8, 8)))
    _save(tmp_path / "val" / "b" / "3.png", Image.new("RGB", (8, 8)))
    assert len(load_split(f"imagefolder:{tmp_path}", "train", image_size=8)) == 1
    assert len(load_split(f"imagefolder:{tmp_path}", "test", image_size=8)) == 2


def test_imagefolder_flat_folder_has_no_test_split(folder):
    """A flat ROOT/<class> folder has a train split only."""
    with pytest.raises(BadInput, match="no test split"):
        load_split(f"imagefolder:{folder}", "test")


def test_imagefolder_empty_class_is_bad_input(folder):
    """A class folder without images is bad input naming it."""
    (folder / "empty").mkdir()
    with pytest.raises(BadInput, match=re.escape(str(folder / "empty")) + " has no images"):
        load_split(f"imagefolder:{folder}", "train")


def test_imagefolder_without_classes_or_folder_is_bad_input(tmp_path):
    """A folder with no class sub-folders, or no folder at all, is bad input."""
    with pytest.raises(BadInput, match="no class sub-folders"):
        load_split(f"imagefolder:{tmp_path}", "train")
    with pytest.raises(BadInput, match="does not exist"):
        load_split(f"imagefolder:{tmp_path / 'missing'}", "train")


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_image_is_bad_input_naming_file(folder, damage):
    """A corrupt image stops iteration with a BadInput that names the file."""
    bad = folder / "dog" / "zz_bad.png"
    if damage == "garbage":
        bad.write_bytes(b"this is not a png")
    else:
        _save(bad, Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3),
                                                                      dtype=np.uint8)))  # fmt: skip
        bad.write_bytes(bad.read_bytes()[:200])
    dataset = load_split(f"imagefolder:{folder}", "train", image_size=8)
    with pytest.raises(BadInput, match=re.escape(str(bad))):
        list(iterate_images(dataset, [np.arange(len(dataset))], num_workers=0))


def test_unknown_split_is_bad_input():
    """Only train and test splits exist."""
    with pytest.raises(BadInput, match="unknown split 'val'"):
        load_split("digits", "val")
