"""Batched views: shapes, reproducibility, identity crop, flip, grayscale, other ops."""

from __future__ import annotations

import torch

from sslkit.data.base import DataInfo
from sslkit.data.views import (
    CropSpec,
    Photometric,
    ViewSpec,
    crop_boxes,
    eval_transform,
    make_views,
    normalize,
    to_float_rgb,
    view_spec_from_config,
)
from sslkit.methods.base import COMMON_AUGMENT

INFO = DataInfo("toy", num_classes=2, image_size=16, channels=3, mean=(0.5, 0.4, 0.3),
                std=(0.2, 0.25, 0.3))  # fmt: skip
NO_PHOTO = Photometric(flip_prob=0.0, jitter_prob=0.0, grayscale_prob=0.0, blur_prob=0.0)
FULL = CropSpec(size=16, scale=(1.0, 1.0))


def _images(n: int = 4, channels: int = 3, side: int = 16) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, channels, side, side), generator=gen, dtype=torch.uint8)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _spec(photo: Photometric, crop: CropSpec = FULL) -> ViewSpec:
    return ViewSpec((crop,), (photo,), INFO.mean, INFO.std)


def test_views_shapes_and_dtypes():
    """Two float32 views of N x 3 x size x size, from the config's crop size."""
    spec = view_spec_from_config({**COMMON_AUGMENT, "blur_prob": 0.5, "erase_prob": 0.5},
                                 INFO, count=2)  # fmt: skip
    views = make_views(_images(), spec, _gen())
    assert len(views) == 2
    assert all(v.dtype == torch.float32 and v.shape == (4, 3, 16, 16) for v in views)
    small = view_spec_from_config({**COMMON_AUGMENT, "size": 8}, INFO, count=3)
    assert [v.shape for v in make_views(_images(), small, _gen())] == [(4, 3, 8, 8)] * 3


def test_single_channel_input_becomes_rgb():
    """1-channel uint8 images give 3-channel views."""
    spec = view_spec_from_config(COMMON_AUGMENT, INFO, count=2)
    assert make_views(_images(channels=1), spec, _gen())[0].shape == (4, 3, 16, 16)


def test_same_seed_same_views_other_seed_other_views():
    """Views are a function of the generator's seed only."""
    spec = view_spec_from_config({**COMMON_AUGMENT, "blur_prob": 0.5, "erase_prob": 0.5},
                                 INFO, count=2)  # fmt: skip
    first = make_views(_images(), spec, _gen(7))
    again = make_views(_images(), spec, _gen(7))
    other = make_views(_images(), spec, _gen(8))
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[0], other[0])
    assert not torch.equal(first[0], first[1])  # the two views differ from each other


def test_full_crop_without_photometric_is_normalised_input():
    """scale (1, 1), no flip and no photometric op reproduce the normalised image."""
    images = _images()
    view = make_views(images, _spec(NO_PHOTO), _gen())[0]
    expected = (images.float() / 255 - torch.tensor(INFO.mean).view(1, 3, 1, 1)) / torch.tensor(
        INFO.std).view(1, 3, 1, 1)  # fmt: skip
    assert torch.allclose(view, expected, atol=1e-5)


def test_flip_prob_one_mirrors():
    """flip_prob 1 with a full crop gives the horizontally mirrored image."""
    images = _images()
    view = make_views(images, _spec(Photometric(flip_prob=1.0, jitter_prob=0.0,
                                                grayscale_prob=0.0)), _gen())[0]  # fmt: skip
    expected = normalize(to_float_rgb(images), INFO.mean, INFO.std).flip(dims=[3])
    assert torch.allclose(view, expected, atol=1e-5)


def test_grayscale_prob_one_gives_equal_channels():
    """grayscale_prob 1 gives three equal channels holding the ITU-R 601 luma."""
    images = _images()
    photo = Photometric(flip_prob=0.0, jitter_prob=0.0, grayscale_prob=1.0)
    gray_spec = ViewSpec((FULL,), (photo,), (0.5,) * 3, (0.5,) * 3)
    view = make_views(images, gray_spec, _gen())[0]
    assert torch.equal(view[:, 0], view[:, 1]) and torch.equal(view[:, 1], view[:, 2])
    rgb = images.float() / 255
    luma = 0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2]
    assert torch.allclose(view[:, 0], (luma - 0.5) / 0.5, atol=1e-5)


def test_grayscale_after_jitter_still_equal_channels():
    """Colour jitter before grayscale does not break the equal channels."""
    spec = ViewSpec((CropSpec(16),), (Photometric(jitter_prob=1.0, grayscale_prob=1.0),),
                    (0.5,) * 3, (0.5,) * 3)  # fmt: skip
    view = make_views(_images(), spec, _gen())[0]
    assert torch.allclose(view[:, 0], view[:, 1]) and torch.allclose(view[:, 1], view[:, 2])


def test_jitter_stays_in_range_and_changes_pixels():
    """Jitter with probability 1 changes the image and keeps it in [0, 1] before normalising."""
    images = _images()
    spec = ViewSpec((FULL,), (Photometric(flip_prob=0.0, jitter_prob=1.0, grayscale_prob=0.0),),
                    (0.0,) * 3, (1.0,) * 3)  # fmt: skip
    view = make_views(images, spec, _gen())[0]
    assert view.min() >= 0 and view.max() <= 1
    assert not torch.allclose(view, images.float() / 255, atol=1e-3)


def test_blur_keeps_constant_images_constant():
    """A Gaussian blur (probability 1) leaves a constant image unchanged."""
    images = torch.full((2, 3, 16, 16), 128, dtype=torch.uint8)
    photo = Photometric(flip_prob=0.0, jitter_prob=0.0, grayscale_prob=0.0, blur_prob=1.0)
    view = make_views(images, ViewSpec((FULL,), (photo,), (0.0,) * 3, (1.0,) * 3), _gen())[0]
    assert torch.allclose(view, torch.full_like(view, 128 / 255), atol=1e-5)


def test_erasing_zeroes_a_rectangle():
    """erase_prob 1 sets a region of every image to 0 (after normalisation)."""
    images = torch.full((3, 3, 16, 16), 255, dtype=torch.uint8)
    photo = Photometric(flip_prob=0.0, jitter_prob=0.0, grayscale_prob=0.0, erase_prob=1.0)
    view = make_views(images, ViewSpec((FULL,), (photo,), (0.0,) * 3, (1.0,) * 3), _gen())[0]
    erased = (view == 0).all(dim=1).flatten(1).sum(dim=1)
    assert (erased > 0).all() and (erased < 16 * 16).all()


def test_crop_boxes_area_and_ratio():
    """A fixed area and ratio 1 give square boxes of side sqrt(area)."""
    width, height = crop_boxes(5, CropSpec(8, scale=(0.25, 0.25), ratio=(1.0, 1.0)), _gen(),
                               "cpu")  # fmt: skip
    assert torch.allclose(width, torch.full((5,), 0.5)) and torch.allclose(height, width)
    width, height = crop_boxes(50, CropSpec(8), _gen(), "cpu")
    area = width * height
    assert (area >= 0.2 - 1e-6).all() and (area <= 1 + 1e-6).all()
    assert (width <= 1).all() and (height <= 1).all()


def test_eval_transform_resizes_and_normalises():
    """The evaluation view resizes to the asked size and normalises; same size is exact."""
    images = _images()
    out = eval_transform(images, 16, INFO.mean, INFO.std)
    assert torch.allclose(out, normalize(to_float_rgb(images), INFO.mean, INFO.std))
    assert eval_transform(images, 24, INFO.mean, INFO.std).shape == (4, 3, 24, 24)
