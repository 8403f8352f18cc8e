"""Batched view pipelines: random crops and photometric augmentation on whole batches.

The loader yields uint8 images of one size; the augmentations run here on the training
device (as kornia does in LoGo's official code), one tensor operation per batch instead
of one PIL call per image. That is what makes small-image training fast on 2 CPU cores.

Ops follow torchvision's definitions (RandomResizedCrop area/ratio sampling, ColorJitter
factors, ITU-R 601 grayscale) with two documented differences: the jitter order is fixed
(brightness, contrast, saturation, hue) instead of randomly permuted, and hue is rotated
in YIQ space instead of HSV. Blur sigmas in an ``augment`` config are given for 224-px
crops (MoCo v2: 0.1-2.0) and scaled to the actual crop size; ``Photometric.blur_sigma``
is in pixels of the output crop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from sslkit.data.base import DataInfo


@dataclass(frozen=True)
class CropSpec:
    """One random-resized crop: output side, area fraction range and aspect-ratio range."""

    size: int
    scale: tuple[float, float] = (0.2, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)


@dataclass(frozen=True)
class Photometric:
    """Photometric augmentation of one view (probabilities and strengths)."""

    flip_prob: float = 0.5
    jitter_prob: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    grayscale_prob: float = 0.2
    blur_prob: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    erase_prob: float = 0.0
    solarize_prob: float = 0.0


@dataclass(frozen=True)
class ViewSpec:
    """The views a method needs per image: one crop and one photometric recipe each."""

    crops: tuple[CropSpec, ...]
    photometric: tuple[Photometric, ...]
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    names: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if len(self.crops) != len(self.photometric):
            raise ValueError("a ViewSpec needs one Photometric per crop")


def view_spec_from_config(augment: dict, info: DataInfo, count: int) -> ViewSpec:
    """``count`` identical views built from an ``augment`` config section."""
    size = int(augment.get("size") or info.image_size)
    crop = CropSpec(size=size, scale=tuple(augment["crop_scale"]))
    sigma_scale = size / 224  # blur sigmas are given for 224 px crops
    jitter = augment["jitter"]
    photo = Photometric(
        flip_prob=augment["flip_prob"],
        jitter_prob=augment["jitter_prob"],
        brightness=jitter[0],
        contrast=jitter[1],
        saturation=jitter[2],
        hue=jitter[3],
        grayscale_prob=augment["grayscale_prob"],
        blur_prob=augment["blur_prob"],
        blur_sigma=(augment["blur_sigma"][0] * sigma_scale, augment["blur_sigma"][1] * sigma_scale),
        erase_prob=augment.get("erase_prob", 0.0),
        solarize_prob=augment.get("solarize_prob", 0.0),
    )
    return ViewSpec((crop,) * count, (photo,) * count, info.mean, info.std)


def multi_crop_view_spec(
    augment: dict, info: DataInfo, crops: list[tuple[float, tuple[float, float]]]
) -> ViewSpec:
    """Views of several sizes (multi-crop), sizes given as fractions of the base crop size.

    ``crops`` lists ``(size_fraction, scale_range)`` per view, e.g. HCSC's six crops at
    224 px are ``[(1, (0.2, 1)), (1, (0.2, 1)), (192/224, (0.172, 0.86)), ...]`` and
    LoGo's are two global ``(1, (r_g, 1))`` and two local ``(96/224, (0.08, r_l))``. The
    base size is ``augment["size"]`` or the dataset's image size, so the same recipe
    adapts to 32 px or 224 px images. Photometric settings come from ``augment``.
    """
    base = view_spec_from_config(augment, info, count=1)
    size = base.crops[0].size
    photo = base.photometric[0]
    specs = tuple(
        CropSpec(size=max(8, round(size * fraction)), scale=tuple(scale))
        for fraction, scale in crops
    )
    return ViewSpec(specs, (photo,) * len(specs), info.mean, info.std)


def to_float_rgb(images: torch.Tensor) -> torch.Tensor:
    """uint8 N x C x H x W (C = 1 or 3) -> float N x 3 x H x W in [0, 1]."""
    images = images.float().div_(255.0)
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    return images


def normalize(images: torch.Tensor, mean, std) -> torch.Tensor:
    """Per-channel normalisation of a float N x 3 x H x W batch."""
    mean_t = torch.tensor(mean, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    std_t = torch.tensor(std, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    return (images - mean_t) / std_t


def _uniform(n: int, low: float, high: float, gen: torch.Generator, device) -> torch.Tensor:
    return torch.rand(n, generator=gen, device=device) * (high - low) + low


def crop_boxes(
    n: int, crop: CropSpec, gen: torch.Generator, device, attempts: int = 10
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample RandomResizedCrop boxes for square images as (width, height) fractions.

    As torchvision: area fraction from ``scale``, log-uniform aspect ratio from ``ratio``,
    ``attempts`` tries to fit inside the image, else a centre crop of the clamped ratio.
    """
    log_ratio = (math.log(crop.ratio[0]), math.log(crop.ratio[1]))
    width = torch.ones(n, device=device)
    height = torch.ones(n, device=device)
    done = torch.zeros(n, dtype=torch.bool, device=device)
    for _ in range(attempts):
        area = _uniform(n, crop.scale[0], crop.scale[1], gen, device)
        aspect = torch.exp(_uniform(n, log_ratio[0], log_ratio[1], gen, device))
        w = torch.sqrt(area * aspect)
        h = torch.sqrt(area / aspect)
        fits = (w <= 1) & (h <= 1) & ~done
        width = torch.where(fits, w, width)
        height = torch.where(fits, h, height)
        done |= fits
        if bool(done.all()):
            break
    return width, height


def random_resized_crop(
    images: torch.Tensor, crop: CropSpec, flip_prob: float, gen: torch.Generator
) -> torch.Tensor:
    """Random-resized-crop (and horizontal flip) of a float batch, bilinear, batched."""
    n, device = images.shape[0], images.device
    width, height = crop_boxes(n, crop, gen, device)
    centre_x = _uniform(n, 0, 1, gen, device) * (1 - width) + width / 2
    centre_y = _uniform(n, 0, 1, gen, device) * (1 - height) + height / 2
    flip = torch.rand(n, generator=gen, device=device) < flip_prob
    sign = torch.where(flip, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3, device=device, dtype=images.dtype)
    theta[:, 0, 0] = width * sign
    theta[:, 0, 2] = centre_x * 2 - 1
    theta[:, 1, 1] = height
    theta[:, 1, 2] = centre_y * 2 - 1
    grid = F.affine_grid(theta, [n, images.shape[1], crop.size, crop.size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def grayscale(images: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma, N x 1 x H x W."""
    r, g, b = images[:, 0:1], images[:, 1:2], images[:, 2:3]
    return 0.299 * r + 0.587 * g + 0.114 * b


def _factor(n: int, strength: float, gen, device) -> torch.Tensor:
    return _uniform(n, max(0.0, 1 - strength), 1 + strength, gen, device).view(n, 1, 1, 1)


def color_jitter(images: torch.Tensor, p: Photometric, gen: torch.Generator) -> torch.Tensor:
    """Brightness, contrast, saturation and hue jitter applied to a random subset."""
    n, device = images.shape[0], images.device
    apply = (torch.rand(n, generator=gen, device=device) < p.jitter_prob).view(n, 1, 1, 1)
    out = images
    if p.brightness > 0:
        out = (out * _factor(n, p.brightness, gen, device)).clamp(0, 1)
    if p.contrast > 0:
        mean = grayscale(out).mean(dim=(1, 2, 3), keepdim=True)
        out = ((out - mean) * _factor(n, p.contrast, gen, device) + mean).clamp(0, 1)
    if p.saturation > 0:
        gray = grayscale(out)
        out = ((out - gray) * _factor(n, p.saturation, gen, device) + gray).clamp(0, 1)
    if p.hue > 0:
        angle = _uniform(n, -p.hue, p.hue, gen, device) * 2 * math.pi
        out = rotate_hue(out, angle).clamp(0, 1)
    return torch.where(apply, out, images)


_RGB_TO_YIQ = torch.tensor(
    [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]]
)


def rotate_hue(images: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rotate the chroma plane (I, Q of YIQ) by ``angle`` radians per image."""
    to_yiq = _RGB_TO_YIQ.to(images.device, images.dtype)
    to_rgb = torch.linalg.inv(to_yiq)
    cos, sin = torch.cos(angle), torch.sin(angle)
    rot = torch.zeros(len(angle), 3, 3, device=images.device, dtype=images.dtype)
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = cos, -sin, sin, cos
    matrix = to_rgb @ rot @ to_yiq  # n x 3 x 3
    return torch.einsum("nij,njhw->nihw", matrix, images)


def random_grayscale(images: torch.Tensor, prob: float, gen: torch.Generator) -> torch.Tensor:
    """Replace a random subset by its luma repeated over three channels."""
    n = images.shape[0]
    apply = (torch.rand(n, generator=gen, device=images.device) < prob).view(n, 1, 1, 1)
    return torch.where(apply, grayscale(images).expand_as(images), images)


def gaussian_blur(images: torch.Tensor, p: Photometric, gen: torch.Generator) -> torch.Tensor:
    """Separable Gaussian blur with a per-image sigma (pixels), on a random subset."""
    n, c, h, w = images.shape
    device = images.device
    apply = (torch.rand(n, generator=gen, device=device) < p.blur_prob).view(n, 1, 1, 1)
    sigma = _uniform(n, p.blur_sigma[0], p.blur_sigma[1], gen, device)
    radius = max(1, min(int(math.ceil(3 * p.blur_sigma[1])), (min(h, w) - 1) // 2))
    offsets = torch.arange(-radius, radius + 1, device=device, dtype=images.dtype)
    kernel = torch.exp(-(offsets.view(1, -1) ** 2) / (2 * sigma.view(-1, 1) ** 2))
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0)
    flat = images.reshape(1, n * c, h, w)
    flat = F.pad(flat, (radius, radius, radius, radius), mode="reflect")
    flat = F.conv2d(flat, kernel.view(n * c, 1, 1, -1), groups=n * c)
    flat = F.conv2d(flat, kernel.view(n * c, 1, -1, 1), groups=n * c)
    return torch.where(apply, flat.view(n, c, h, w), images)


def random_solarize(images: torch.Tensor, prob: float, gen: torch.Generator) -> torch.Tensor:
    """Invert the pixels at or above 0.5 (PIL's ``solarize(threshold=128)``) of a random subset."""
    n = images.shape[0]
    apply = (torch.rand(n, generator=gen, device=images.device) < prob).view(n, 1, 1, 1)
    return torch.where(apply & (images >= 0.5), 1.0 - images, images)


def random_erasing(images: torch.Tensor, prob: float, gen: torch.Generator) -> torch.Tensor:
    """Erase one random rectangle (2-33 % of the area, ratio 0.3-3.3) per chosen image."""
    n, _, h, w = images.shape
    device = images.device
    area = _uniform(n, 0.02, 0.33, gen, device)
    aspect = torch.exp(_uniform(n, math.log(0.3), math.log(1 / 0.3), gen, device))
    eh = torch.sqrt(area * aspect).clamp(max=1)
    ew = torch.sqrt(area / aspect).clamp(max=1)
    top = _uniform(n, 0, 1, gen, device) * (1 - eh)
    left = _uniform(n, 0, 1, gen, device) * (1 - ew)
    ys = (torch.arange(h, device=device) + 0.5).view(1, h, 1) / h
    xs = (torch.arange(w, device=device) + 0.5).view(1, 1, w) / w
    inside = (
        (ys >= top.view(n, 1, 1)) & (ys < (top + eh).view(n, 1, 1))
        & (xs >= left.view(n, 1, 1)) & (xs < (left + ew).view(n, 1, 1))
    )  # fmt: skip
    apply = (torch.rand(n, generator=gen, device=device) < prob).view(n, 1, 1)
    return images.masked_fill((inside & apply).unsqueeze(1), 0.0)


def make_view(
    images: torch.Tensor,
    crop: CropSpec,
    photo: Photometric,
    mean,
    std,
    gen: torch.Generator,
) -> torch.Tensor:
    """One augmented, normalised view of a float [0, 1] RGB batch."""
    view = random_resized_crop(images, crop, photo.flip_prob, gen)
    if photo.jitter_prob > 0:
        view = color_jitter(view, photo, gen)
    if photo.grayscale_prob > 0:
        view = random_grayscale(view, photo.grayscale_prob, gen)
    if photo.blur_prob > 0:
        view = gaussian_blur(view, photo, gen)
    if photo.solarize_prob > 0:
        view = random_solarize(view, photo.solarize_prob, gen)
    view = normalize(view, mean, std)
    if photo.erase_prob > 0:
        view = random_erasing(view, photo.erase_prob, gen)
    return view


def make_views(images: torch.Tensor, spec: ViewSpec, gen: torch.Generator) -> list[torch.Tensor]:
    """All views of a uint8 batch (already on the training device)."""
    rgb = to_float_rgb(images)
    return [
        make_view(rgb, crop, photo, spec.mean, spec.std, gen)
        for crop, photo in zip(spec.crops, spec.photometric, strict=True)
    ]


def eval_transform(images: torch.Tensor, size: int, mean, std) -> torch.Tensor:
    """The un-augmented evaluation view: resize to ``size`` (antialiased) and normalise."""
    rgb = to_float_rgb(images)
    if rgb.shape[-1] != size or rgb.shape[-2] != size:
        rgb = F.interpolate(rgb, size=(size, size), mode="bilinear", antialias=True,
                            align_corners=False)  # fmt: skip
    return normalize(rgb, mean, std)
