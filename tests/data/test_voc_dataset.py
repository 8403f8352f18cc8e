"""The VOC2007 reader: layouts, {1, 0, -1} labels (class files and XML), images, errors."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from sslkit.data.voc import VOC_CLASSES, VOC07Dataset, find_voc2007
from sslkit.errors import BadInput
from tests.transfer_data import VOC_SPLIT_IDS, expected_voc_labels, write_voc2007


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory):
    """The tiny VOCdevkit/VOC2007 with per-class files and annotations."""
    return write_voc2007(tmp_path_factory.mktemp("voc"))


def test_the_twenty_classes_in_the_standard_order():
    """20 classes, aeroplane first, tvmonitor last, alphabetical like the devkit."""
    assert len(VOC_CLASSES) == 20 and VOC_CLASSES[0] == "aeroplane"
    assert VOC_CLASSES[-1] == "tvmonitor" and list(VOC_CLASSES) == sorted(VOC_CLASSES)


def test_root_may_be_the_parent_the_devkit_or_voc2007(voc_root):
    """ROOT, ROOT/VOCdevkit and ROOT/VOCdevkit/VOC2007 all find the same folder."""
    voc = voc_root / "VOCdevkit" / "VOC2007"
    assert find_voc2007(voc_root) == voc
    assert find_voc2007(voc_root / "VOCdevkit") == voc
    assert find_voc2007(voc) == voc


def test_labels_from_class_files_keep_difficult_as_zero(voc_root):
    """Per image the devkit's {1, 0, -1} row; difficult-only objects give 0."""
    train = VOC07Dataset(voc_root, "trainval", 32)
    assert train.image_ids == [f"{i:06d}" for i in VOC_SPLIT_IDS["trainval"]]
    expected = np.stack([expected_voc_labels(i) for i in VOC_SPLIT_IDS["trainval"]])
    assert np.array_equal(train.targets, expected)
    test = VOC07Dataset(voc_root, "test", 32)
    row = test.image_ids.index("000005")  # its only object (an aeroplane) is difficult
    assert test.targets[row, VOC_CLASSES.index("aeroplane")] == 0
    row = test.image_ids.index("000015")  # a cat with a difficult dog
    assert test.targets[row, VOC_CLASSES.index("cat")] == 1
    assert test.targets[row, VOC_CLASSES.index("dog")] == 0
    assert (test.targets == 0).sum() == 3
    assert test.multi_hot()[row].tolist() == [float(c == "cat") for c in VOC_CLASSES]
    assert (test.labels == -1).all() and len(test) == 20


def test_xml_fallback_gives_the_same_labels(voc_root, tmp_path):
    """Without the per-class files the XML annotations give the identical matrix."""
    bare = write_voc2007(tmp_path, class_files=False)
    for split in ("train", "test"):
        from_xml = VOC07Dataset(bare, split, 32).targets
        assert np.array_equal(from_xml, VOC07Dataset(voc_root, split, 32).targets)


def test_images_are_resized_squares_and_squash_keeps_everything(voc_root):
    """Shorter side -> resize, centre crop; squash fits the whole 40 x 32 image."""
    cropped = VOC07Dataset(voc_root, "train", 32, resize=37)
    image, label, index = cropped[0]
    assert image.shape == (3, 32, 32) and image.dtype.is_floating_point is False
    assert label == -1 and index == 0
    squashed = VOC07Dataset(voc_root, "train", 16, squash=True).load(0)
    assert squashed.shape == (3, 16, 16)
    assert squashed[:, :, 0].float().mean() < 10  # the black side band survives the squash


def test_fingerprint_tracks_files_and_geometry(voc_root, tmp_path):
    """Stable for the same files; changes with an image's mtime or the resize geometry."""
    root = write_voc2007(tmp_path)
    first = VOC07Dataset(root, "val", 32).fingerprint()
    assert VOC07Dataset(root, "val", 32).fingerprint() == first
    assert VOC07Dataset(root, "val", 32, resize=37).fingerprint() != first
    image = root / "VOCdevkit" / "VOC2007" / "JPEGImages" / "000003.jpg"
    os.utime(image, ns=(1, 1))
    assert VOC07Dataset(root, "val", 32).fingerprint() != first
    val_again = VOC07Dataset(root, "val", 32).fingerprint()
    assert VOC07Dataset(root, "test", 32).fingerprint() != val_again


def test_bad_layouts_are_one_line_errors_with_a_fix(tmp_path):
    """Missing root, ImageSets, split file, image, class name: BadInput that says what to do."""
    with pytest.raises(BadInput, match="does not exist"):
        VOC07Dataset(tmp_path / "nowhere", "train")
    root = write_voc2007(tmp_path / "a")
    voc = root / "VOCdevkit" / "VOC2007"
    (voc / "ImageSets" / "Main" / "test.txt").unlink()
    with pytest.raises(BadInput, match=r"test\.txt not found.*VOCtest"):
        VOC07Dataset(root, "test")
    with pytest.raises(BadInput, match="unknown VOC split"):
        VOC07Dataset(root, "minival")
    (voc / "JPEGImages" / "000000.jpg").unlink()
    with pytest.raises(BadInput, match="000000.jpg not found"):
        VOC07Dataset(root, "train").fingerprint()
    shutil.rmtree(voc / "ImageSets")
    with pytest.raises(BadInput, match="no VOC2007 layout"):
        VOC07Dataset(root, "train")
    bare = write_voc2007(tmp_path / "b", class_files=False)
    xml = bare / "VOCdevkit" / "VOC2007" / "Annotations" / "000000.xml"
    xml.write_text(xml.read_text().replace("aeroplane", "zeppelin"))
    with pytest.raises(BadInput, match="unknown class 'zeppelin'"):
        VOC07Dataset(bare, "train")
