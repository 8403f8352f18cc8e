"""The Places205 reader: split files, both image folders, class names, errors."""

from __future__ import annotations

import numpy as np
import pytest

from sslkit.data.places import Places205Dataset, category_name
from sslkit.errors import BadInput
from tests.transfer_data import write_places205


def test_reads_the_release_layout(tmp_path):
    """30 / 15 images, labels 0..2 in file order, names from the category folders."""
    root = write_places205(tmp_path)
    train, val = Places205Dataset(root, "train", 32), Places205Dataset(root, "val", 32)
    assert len(train) == 30 and len(val) == 15
    assert np.bincount(train.labels).tolist() == [10, 10, 10]
    assert train.info.class_names == ("abbey", "beach", "church/outdoor")
    assert train.load(0).shape == (3, 32, 32) and train.spec == f"places205:{root}"
    assert train.fingerprint() != val.fingerprint()


def test_images256_folder_and_comma_separated_lines(tmp_path):
    """ROOT/images256 and "path,label" lines are accepted too."""
    root = write_places205(tmp_path, images_dir="images256", separator=",")
    dataset = Places205Dataset(root, "val", 24)
    assert dataset.paths[0].parent.parent.parent.name == "images256"
    assert dataset.labels.tolist() == [0] * 5 + [1] * 5 + [2] * 5
    assert dataset.load(14).shape == (3, 24, 24)


def test_category_name_drops_the_letter_folder():
    """``a/abbey/x.jpg`` -> abbey; nested categories keep their sub-folder."""
    assert category_name("a/abbey/x.jpg") == "abbey"
    assert category_name("c/church/outdoor/x.jpg") == "church/outdoor"


def test_bad_layouts_are_bad_input(tmp_path):
    """Missing root, split file, images folder, malformed line: BadInput with the fix."""
    with pytest.raises(BadInput, match="does not exist"):
        Places205Dataset(tmp_path / "nowhere", "train")
    root = write_places205(tmp_path / "p")
    with pytest.raises(BadInput, match="unknown Places205 split"):
        Places205Dataset(root, "test")
    split = root / "trainvalsplit_places205" / "val_places205.csv"
    split.write_text("a/abbey/x.jpg\n")
    with pytest.raises(BadInput, match="line 1 is not"):
        Places205Dataset(root, "val")
    split.unlink()
    with pytest.raises(BadInput, match="val_places205.csv not found"):
        Places205Dataset(root, "val")
    empty = tmp_path / "e"
    (empty / "trainvalsplit_places205").mkdir(parents=True)
    (empty / "trainvalsplit_places205" / "train_places205.csv").write_text("a/x.jpg 0\n")
    with pytest.raises(BadInput, match="no Places205 images"):
        Places205Dataset(empty, "train")
