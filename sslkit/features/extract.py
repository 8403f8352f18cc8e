"""Embed every image of a dataset split with a frozen network (shared by commands and methods)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sslkit.data.base import DataInfo, ImageDataset
from sslkit.data.loader import extraction_batches, iterate_images
from sslkit.data.views import eval_transform
from sslkit.distributed import all_gather_variable, rank, world_size
from sslkit.errors import BadInput
from sslkit.models.checkpoint import LoadedEncoder, load_encoder

LAYERS = ("backbone", "head")


@dataclass(frozen=True)
class EvalTransform:
    """The un-augmented view used for extraction: resize to ``size``, normalise."""

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return eval_transform(images, self.size, self.mean, self.std)

    def describe(self) -> str:
        """A string recorded in feature files and cache keys."""
        return f"resize{self.size}+normalize(mean={list(self.mean)},std={list(self.std)})"


@torch.no_grad()
def embedded_batches(
    network: Callable[[torch.Tensor], torch.Tensor],
    dataset: ImageDataset,
    transform: EvalTransform,
    device: torch.device,
    batches: list[np.ndarray],
    num_workers: int = 0,
    normalize_rows: bool = True,
) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """Yield ``(dataset positions, float32 features on device)`` for each batch of positions."""
    autocast = (torch.autocast("cuda", dtype=torch.float16) if device.type == "cuda"
                else nullcontext())  # fmt: skip
    for (images, _), positions in zip(iterate_images(dataset, batches, num_workers), batches,
                                      strict=True):  # fmt: skip
        images = transform(images.to(device, non_blocking=True))
        if device.type == "cuda":
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast:
            output = network(images).float()
        yield positions, F.normalize(output, dim=1) if normalize_rows else output


@torch.no_grad()
def embed_dataset(
    network: Callable[[torch.Tensor], torch.Tensor],
    dataset: ImageDataset,
    transform: EvalTransform,
    device: torch.device,
    batch_size: int = 256,
    num_workers: int = 0,
    normalize_rows: bool = True,
    progress: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """``N x D`` float32 features in dataset order, on ``device``, identical on every rank.

    Each process embeds a contiguous share of the dataset; the shares are gathered in rank
    order. Modules inside ``network`` should be in eval mode (the caller's choice). For
    files larger than memory, :func:`sslkit.features.streaming.write_dataset_features`
    streams to HDF5 instead.
    """
    batches = extraction_batches(len(dataset), batch_size, rank(), world_size())
    parts = []
    for _, output in embedded_batches(network, dataset, transform, device, batches, num_workers,
                                      normalize_rows):  # fmt: skip
        parts.append(output)
        if progress is not None:
            progress(len(output))
    mine = torch.cat(parts) if parts else torch.zeros(0, 1, device=device)
    return all_gather_variable(mine)


@dataclass
class FeatureNetwork:
    """A frozen network that maps images to features, and its provenance.

    The network is built when first used (:attr:`network`): a feature-cache hit needs only
    the provenance.
    """

    layer: str
    encoder: LoadedEncoder
    bn_images: int = 0  # recompute BatchNorm statistics on this many clean training images
    bn_data: str | None = None  # ... of this data spec's training split
    _module: nn.Module | None = field(default=None, repr=False)
    bn_recomputed: bool = field(default=False, repr=False)

    @property
    def network(self) -> nn.Module:
        """The frozen network (in eval mode), built on first access."""
        if self._module is None:
            self._module = self._build().eval()
        return self._module

    def _build(self) -> nn.Module:
        backbone = self.encoder.build_backbone()
        if self.layer == "backbone":
            return backbone
        from sslkit.config import method_config
        from sslkit.methods.registry import get_method

        config = self.encoder.config
        # the name the run was started with (PACKAGE:NAME when two packages register it)
        method_cls = get_method(config["method"].get("name") or self.encoder.method)
        method = method_cls(method_config(method_cls, config["method"]), backbone,
                            DataInfo.from_dict(self.encoder.checkpoint["data_info"]))  # fmt: skip
        method.load_state_dict(self.encoder.checkpoint["method_state"])
        return _MethodEmbedding(method)

    def trained_view(self) -> EvalTransform | None:
        """The evaluation view the encoder was trained for: an sslkit checkpoint's crop size
        (``augment.size``, else its data's image size) and its data's normalisation;
        ``None`` for other checkpoints (they say neither)."""
        info = self.encoder.checkpoint.get("data_info") if self.encoder.source_format == (
            "sslkit") else None  # fmt: skip
        if not info:
            return None
        augment = (self.encoder.config or {}).get("augment") or {}
        size = augment.get("size") or info["image_size"]
        return EvalTransform(int(size), tuple(info["mean"]), tuple(info["std"]))

    def provenance(self) -> dict[str, Any]:
        """Attributes recorded in feature files and JSON results."""
        found = {
            "checkpoint_sha256": self.encoder.sha256,
            "checkpoint_format": self.encoder.source_format,
            "method": self.encoder.method or "",
            "arch": self.encoder.arch,
            "layer": self.layer,
        }
        if self.encoder.kind != "online":  # (absent by default: cache keys stay as they were)
            found["encoder"] = self.encoder.kind
        if self.bn_images:
            found["bn_recomputed"] = f"{self.bn_images} clean training images of {self.bn_data}"
        return found


class _MethodEmbedding(nn.Module):
    def __init__(self, method: nn.Module) -> None:
        super().__init__()
        self.method = method

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.method.embed(images)


def load_feature_network(checkpoint: str, layer: str, arch: str | None = None,
                         encoder: str = "online", recompute_bn: int = 0,
                         bn_data: str | None = None) -> FeatureNetwork:  # fmt: skip
    """A checkpoint's backbone (``layer=backbone``) or its method's embedding (``head``).

    ``encoder="momentum"`` takes the momentum encoder's backbone; ``recompute_bn=N``
    replaces the BatchNorm statistics by their average over N clean (evaluation-view)
    training images of ``bn_data`` before any feature is computed.
    """
    if layer not in LAYERS:
        raise BadInput(f"unknown layer '{layer}': use {' or '.join(LAYERS)}")
    if layer == "head" and (encoder != "online" or recompute_bn):
        raise BadInput("--encoder momentum and --recompute-bn apply to backbone features: "
                       "drop --layer head")  # fmt: skip
    if recompute_bn < 0:
        raise BadInput(f"--recompute-bn must be >= 0 images, got {recompute_bn}")
    loaded = load_encoder(checkpoint, arch, encoder)
    if layer == "head" and loaded.source_format != "sslkit":
        raise BadInput("--layer head needs an sslkit checkpoint (others hold no head): "
                       "use --layer backbone")  # fmt: skip
    return FeatureNetwork(layer, loaded, bn_images=int(recompute_bn), bn_data=bn_data)


def labels_and_indices(dataset: ImageDataset) -> tuple[np.ndarray, np.ndarray]:
    """The labels and source indices to store beside extracted features."""
    return dataset.labels.astype(np.int64), dataset.source_indices.astype(np.int64)
