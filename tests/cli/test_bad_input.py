"""Bad input of every kind the reliability issue lists: one clear line, exit 2, no half files.

Also what is *not* bad input: grayscale, CMYK, 16-bit, palette and alpha images are
converted, and ``--skip-bad-images`` trains and extracts around unreadable files.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sslkit.data.sources import to_rgb8
from tests.conftest import QUICK_MOCO, run_cli

SMALL_IMAGES = ["--set", "data.image_size=32", "--no-progress"]


def _one_line_error(result, resumed: bool = False) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    if resumed:  # --resume first says where it continues, on a line of its own
        assert lines[0].startswith("resuming "), result.output
        lines = lines[1:]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: ")
    return lines[0]


def _image_folder(root: Path, per_class: int = 6) -> Path:
    """Two classes of small real-looking RGB PNGs."""
    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (root / cls).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / cls / f"{i}.png")
    return root


def _add_bad_images(root: Path) -> list[str]:
    """A zero-byte file, a text file named .jpg and a truncated PNG; returns their names."""
    (root / "cat" / "empty.png").write_bytes(b"")
    (root / "dog" / "text.jpg").write_bytes(b"this is not a jpeg")
    whole = (root / "dog" / "0.png").read_bytes()
    (root / "dog" / "truncated.png").write_bytes(whole[: len(whole) // 2])
    return ["empty.png", "text.jpg", "truncated.png"]


def test_zero_byte_image_is_named(tmp_path, digits_run):
    """Without --skip-bad-images, the first unreadable file stops extraction, named."""
    root = _image_folder(tmp_path / "images")
    (root / "cat" / "empty.png").write_bytes(b"")
    out = tmp_path / "f.h5"
    line = _one_line_error(run_cli("extract", "--checkpoint", digits_run / "checkpoint.pt",
                                   "--data", f"imagefolder:{root}", "--out", out, expect=2))
    assert "empty.png" in line and "--skip-bad-images" in line
    assert not out.exists() and not list(tmp_path.glob(".sslkit-tmp-*"))


def test_skip_bad_images_in_pretrain_and_extract(tmp_path, digits_run):
    """--skip-bad-images leaves the 3 unreadable files out, says so, and records them."""
    root = _image_folder(tmp_path / "images")
    bad = _add_bad_images(root)
    workdir = tmp_path / "run"
    result = run_cli("pretrain", "--method", "moco", "--data", f"imagefolder:{root}",
                     "--epochs", "1", "--workdir", workdir, "--batch-size", "4",
                     "--arch", "resnet18", "--set", "method.queue_size=8", *SMALL_IMAGES,
                     "--skip-bad-images", "--json", tmp_path / "pretrain.json")  # fmt: skip
    assert "skipped 3 unreadable image(s)" in result.output
    summary = json.loads((tmp_path / "pretrain.json").read_text())
    assert sorted(Path(s.split(":")[0]).name for s in summary["skipped_images"]) == bad
    assert summary["steps"] == 12 // 4  # the 12 good images only

    out = tmp_path / "features.h5"
    run_cli("extract", "--checkpoint", workdir / "checkpoint.pt", "--data",
            f"imagefolder:{root}", "--out", out, "--skip-bad-images",
            "--json", tmp_path / "extract.json")  # fmt: skip
    extracted = json.loads((tmp_path / "extract.json").read_text())
    assert extracted["rows"] == 12 and len(extracted["skipped_images"]) == 3


def test_skip_bad_images_in_linear_and_semisup(tmp_path, digits_run):
    """The evaluations that read images take --skip-bad-images too: bad training and test
    images are left out, counted on stderr and listed in the JSON."""
    root = tmp_path / "images"
    bad = _add_bad_images(_image_folder(root / "train"))
    _image_folder(root / "test", per_class=3)
    (root / "test" / "cat" / "empty.png").write_bytes(b"")
    checkpoint = digits_run / "checkpoint.pt"
    probe = run_cli("linear", "--checkpoint", checkpoint, "--data", f"imagefolder:{root}",
                    "--recipe", "pcl", "--epochs", "1", "--batch-size", "4", "--lr", "0.001",
                    "--no-cache",
                    "--skip-bad-images", "--json", tmp_path / "linear.json")  # fmt: skip
    assert "skipped 3 unreadable image(s)" in probe.output
    assert "skipped 1 unreadable image(s)" in probe.output
    inputs = json.loads((tmp_path / "linear.json").read_text())["inputs"]
    names = sorted(Path(s.split(":")[0]).name for s in inputs["train"]["skipped_images"])
    assert names == bad and len(inputs["test"]["skipped_images"]) == 1
    semi = run_cli("semisup", "--checkpoint", checkpoint, "--data", f"imagefolder:{root}",
                   "--labels", "0.5", "--epochs", "1", "--batch-size", "4",
                   "--skip-bad-images", "--json", tmp_path / "semisup.json")  # fmt: skip
    assert "skipped 3 unreadable image(s)" in semi.output
    result = json.loads((tmp_path / "semisup.json").read_text())
    assert result["labelled"]["images"] == 6  # half of the 12 good training images
    assert len(result["inputs"]["skipped_images"]["test"]) == 1


def test_folder_of_only_unreadable_images(tmp_path, digits_run):
    """--skip-bad-images with nothing decodable is bad input, not an empty dataset."""
    for cls in ("a", "b"):
        (tmp_path / "images" / cls).mkdir(parents=True)
        (tmp_path / "images" / cls / "x.png").write_bytes(b"")
    line = _one_line_error(run_cli("extract", "--checkpoint", digits_run / "checkpoint.pt",
                                   "--data", f"imagefolder:{tmp_path / 'images'}",
                                   "--out", tmp_path / "f.h5", "--skip-bad-images",
                                   expect=2))  # fmt: skip
    assert "no image" in line


def test_empty_class_folder(tmp_path, digits_run):
    """A class folder with no images is named (a typo'd or unfinished copy)."""
    root = _image_folder(tmp_path / "images")
    (root / "zebra").mkdir()
    line = _one_line_error(run_cli("extract", "--checkpoint", digits_run / "checkpoint.pt",
                                   "--data", f"imagefolder:{root}", "--out", tmp_path / "f.h5",
                                   expect=2))  # fmt: skip
    assert "zebra" in line and "no images" in line


def test_unusual_image_modes_are_converted(tmp_path, digits_run):
    """Grayscale, grey+alpha, RGBA, palette, CMYK and 16-bit images all embed as RGB."""
    root = tmp_path / "images"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    rng = np.random.default_rng(1)
    rgb = Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8))
    rgb.convert("L").save(root / "a" / "gray.png")
    rgb.convert("LA").save(root / "a" / "gray_alpha.png")
    rgb.convert("RGBA").save(root / "a" / "alpha.png")
    rgb.convert("P").save(root / "b" / "palette.png")
    rgb.convert("CMYK").save(root / "b" / "cmyk.jpg")
    deep = (rng.integers(0, 65536, (30, 40))).astype(np.uint16)
    Image.fromarray(deep).save(root / "b" / "deep16.png")
    run_cli("extract", "--checkpoint", digits_run / "checkpoint.pt", "--data",
            f"imagefolder:{root}", "--out", tmp_path / "f.h5",
            "--json", tmp_path / "f.json")  # fmt: skip
    assert json.loads((tmp_path / "f.json").read_text())["rows"] == 6


def test_sixteen_bit_images_are_rescaled_not_clipped():
    """A 16-bit white pixel becomes 255 and mid-grey ~128, not everything 255."""
    deep = Image.fromarray(np.array([[0, 32768, 65535]], dtype=np.uint16))
    pixels = np.asarray(to_rgb8(deep))
    assert pixels.shape == (1, 3, 3) and pixels.dtype == np.uint8
    assert pixels[0, :, 0].tolist() == [0, 128, 255]


def test_checkpoint_of_another_architecture(tmp_path, digits_run):
    """A resnet18 checkpoint read as resnet50 is refused, naming the arch."""
    line = _one_line_error(run_cli("extract", "--checkpoint", digits_run / "checkpoint.pt",
                                   "--data", "digits", "--arch", "resnet50",
                                   "--out", tmp_path / "f.h5", expect=2))  # fmt: skip
    assert "resnet50" in line and "--arch" in line
    assert not (tmp_path / "f.h5").exists()


def test_more_clusters_than_points(tmp_path, digits_run):
    """k-means with k > N says how large k may be; no cluster file is written."""
    features = tmp_path / "test.h5"
    run_cli("extract", "--checkpoint", digits_run / "checkpoint.pt", "--data", "digits",
            "--split", "test", "--out", features)  # fmt: skip
    out = tmp_path / "clusters.h5"
    line = _one_line_error(run_cli("cluster", "--features", features, "--clusters", "1000",
                                   "--out", out, expect=2))  # fmt: skip
    assert "use k <= 450" in line
    assert not out.exists()


def test_label_file_naming_missing_images(tmp_path, digits_run):
    """A semisup subset file naming images that are not in the split is refused."""
    root = _image_folder(tmp_path / "images" / "train")
    _image_folder(tmp_path / "images" / "test", per_class=2)
    listing = tmp_path / "1percent.txt"
    listing.write_text("0.png\n1.png\nhorse_7.png\n")  # names, as in 1percent.txt
    line = _one_line_error(run_cli("semisup", "--checkpoint", digits_run / "checkpoint.pt",
                                   "--data", f"imagefolder:{root.parent}",
                                   "--subset-file", listing, "--epochs", "1",
                                   "--workdir", tmp_path / "semisup", expect=2))  # fmt: skip
    assert "1 names are not in" in line and "horse_7.png" in line
    assert not (tmp_path / "semisup" / "semisup.json").exists()


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    """An exploding lr makes the loss NaN: exit 2 naming the step; epoch 1 is kept."""
    workdir = tmp_path / "run"
    common = ["--method", "moco", "--data", "digits@256", "--workdir", workdir, *QUICK_MOCO]
    run_cli("pretrain", *common, "--epochs", "1")
    good = (workdir / "checkpoint.pt").read_bytes()
    line = _one_line_error(run_cli("pretrain", *common, "--epochs", "2", "--resume",
                                   "--lr", "1e30", expect=2), resumed=True)  # fmt: skip
    assert "loss is nan" in line.lower() or "loss is inf" in line.lower()
    assert "epoch 2 step" in line and "checkpoint.pt" in line
    assert (workdir / "checkpoint.pt").read_bytes() == good


class _Payload:
    """An object whose unpickling runs code (what a malicious checkpoint would carry)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (str(self.marker),))


@pytest.mark.parametrize("command", ["extract", "knn"])
def test_checkpoint_with_pickled_code_is_refused_unrun(tmp_path, command):
    """Checkpoints are read with weights_only=True: the payload never runs."""
    marker = tmp_path / "payload-ran"
    checkpoint = tmp_path / "evil.pt"
    torch.save({"encoder": {"conv1.weight": torch.zeros(1)}, "x": _Payload(marker)}, checkpoint)
    args = (["--data", "digits", "--out", tmp_path / "f.h5"] if command == "extract"
            else ["--data", "digits", "--cache-dir", tmp_path / "cache"])  # fmt: skip
    line = _one_line_error(run_cli(command, "--checkpoint", checkpoint, *args, expect=2))
    assert "cannot read checkpoint" in line
    assert not marker.exists()
