"""Checkpoint + data spec + split -> a FeatureSet with provenance (used by extract and knn)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from sslkit.data.base import ImageDataset
from sslkit.data.specs import load_split
from sslkit.distributed import rank, world_size
from sslkit.features.extract import (
    EvalTransform,
    FeatureNetwork,
    embed_dataset,
    labels_and_indices,
)
from sslkit.features.store import FeatureSet
from sslkit.utils.progress import progress


def eval_transform_for(network: FeatureNetwork, dataset: ImageDataset,
                       size: int | None = None) -> EvalTransform:  # fmt: skip
    """The evaluation view: the size and normalisation the checkpoint was trained with (an
    sslkit checkpoint), else the dataset's own; ``size`` (an explicit ``--image-size``)
    replaces the size."""
    view = network.trained_view() or EvalTransform(dataset.info.image_size, dataset.info.mean,
                                                   dataset.info.std)  # fmt: skip
    return view if size is None else EvalTransform(int(size), view.mean, view.std)


def provenance_of(network: FeatureNetwork, dataset: ImageDataset, transform: EvalTransform,
                  normalized: bool = True) -> dict[str, Any]:  # fmt: skip
    """Everything that determines a feature file's content."""
    return {
        **network.provenance(),
        "dataset": dataset.spec,
        "dataset_fingerprint": dataset.fingerprint(),
        "split": dataset.split,
        "transform": transform.describe(),
        "normalized": normalized,
    }


def feature_module(network: FeatureNetwork, device: torch.device) -> torch.nn.Module:
    """The network on ``device`` (channels_last on CUDA), ready to embed batches; its
    BatchNorm statistics recomputed first when ``network.bn_images`` asks for it."""
    module = network.network.to(device)
    if device.type == "cuda":
        module = module.to(memory_format=torch.channels_last)
    if network.bn_images and not network.bn_recomputed:
        train = load_dataset(network.bn_data, "train", network)
        recompute_batchnorm(module, train, eval_transform_for(network, train), device,
                            network.bn_images)  # fmt: skip
        network.bn_recomputed = True
    return module


@torch.no_grad()
def recompute_batchnorm(module: torch.nn.Module, dataset: ImageDataset,
                        transform: EvalTransform, device: torch.device, images: int,
                        batch_size: int = 256, seed: int = 0) -> int:  # fmt: skip
    """Replace every BatchNorm's running mean and variance by their average over the
    batches of ``images`` training images (a seeded sample, the un-augmented evaluation
    view); the module is left in eval mode. Returns the number of images used.

    Training leaves statistics of augmented crops, averaged with momentum over weights that
    kept changing; these describe the final weights on the images that are evaluated.
    """
    from sslkit.data.loader import iterate_images

    norms = [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    used = min(int(images), len(dataset))
    if not norms or used == 0:
        return 0
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average over the batches
    order = np.random.default_rng(seed).permutation(len(dataset))[:used]
    module.train()
    try:
        batches = [order[i : i + batch_size] for i in range(0, used, batch_size)]
        for batch, _ in iterate_images(dataset, batches):
            module(transform(batch.to(device)))
    finally:
        module.eval()
    return used


def compute_features(
    network: FeatureNetwork,
    dataset: ImageDataset,
    device: torch.device,
    batch_size: int = 256,
    num_workers: int = 0,
    normalized: bool = True,
    show_progress: bool = False,
    transform: EvalTransform | None = None,
) -> FeatureSet:
    """Embed a dataset split (L2-normalised rows unless ``normalized=False``) with provenance;
    ``show_progress`` reports it on stderr (on the main process). ``transform`` replaces
    the evaluation view of :func:`eval_transform_for` (an explicit ``--image-size``)."""
    transform = transform or eval_transform_for(network, dataset)
    module = feature_module(network, device)
    share = -(-len(dataset) // world_size())  # this process's images, about
    with progress(f"embed {dataset.spec} {dataset.split}", share,
                  enabled=show_progress and rank() == 0) as shown:  # fmt: skip
        features = embed_dataset(module, dataset, transform, device, batch_size, num_workers,
                                 normalize_rows=normalized,
                                 progress=lambda n: shown.update(advance=n, images=n))
    labels, indices = labels_and_indices(dataset)
    return FeatureSet(features.cpu().numpy(), labels, indices,
                      provenance_of(network, dataset, transform, normalized))  # fmt: skip


def split_features(network: FeatureNetwork, spec: str, splits: tuple[str, ...],
                   device: torch.device, *, cache_dir=None, use_cache: bool = True,
                   batch_size: int = 256, download: bool = False, normalized: bool = True,
                   skip_bad_images: bool = False, show_progress: bool = False,
                   ) -> tuple[list[FeatureSet], dict[str, Any]]:  # fmt: skip
    """Features of several splits of a data spec, through the feature cache.

    Returns the feature sets and, per split, where they came from (``cache_hit``,
    ``cache_file`` and the provenance) for JSON results.
    """
    parts, sources = [], {}
    for split in splits:
        dataset = load_dataset(spec, split, network, download, skip_bad_images)
        features, source = dataset_features(network, dataset, device, cache_dir=cache_dir,
                                            use_cache=use_cache, batch_size=batch_size,
                                            normalized=normalized,
                                            show_progress=show_progress)  # fmt: skip
        parts.append(features)
        sources[split] = {**source, "skipped_images": list(dataset.skipped_images)}
    return parts, sources


def baseline_split_features(trained: FeatureNetwork, kind: str, spec: str,
                            splits: tuple[str, ...], device: torch.device, *, cache_dir=None,
                            use_cache: bool = True, batch_size: int = 256,
                            download: bool = False, normalized: bool = True,
                            skip_bad_images: bool = False, show_progress: bool = False,
                            ) -> tuple[list[FeatureSet], dict[str, Any]]:  # fmt: skip
    """:func:`split_features` of a reference for ``trained`` (``kind``: ``raw_pixels`` or
    ``random_init``; see :mod:`sslkit.features.baselines`), on the same images and, for the
    random initialisation, with the same evaluation view as ``trained``."""
    from sslkit.errors import BadInput
    from sslkit.features.baselines import KINDS, RawPixels, random_init_network

    if kind not in KINDS:
        raise BadInput(f"unknown baseline '{kind}': use {' or '.join(KINDS)}")
    reference = RawPixels() if kind == "raw_pixels" else random_init_network(trained)
    parts, sources = [], {}
    for split in splits:
        dataset = load_dataset(spec, split, trained, download, skip_bad_images)
        view = (reference.transform(dataset) if isinstance(reference, RawPixels)
                else eval_transform_for(trained, dataset))  # fmt: skip
        features, source = dataset_features(reference, dataset, device, cache_dir=cache_dir,
                                            use_cache=use_cache, batch_size=batch_size,
                                            normalized=normalized, show_progress=show_progress,
                                            transform=view)  # fmt: skip
        parts.append(features)
        sources[split] = {**source, "skipped_images": list(dataset.skipped_images)}
    return parts, sources


def dataset_features(network: FeatureNetwork, dataset: ImageDataset, device: torch.device, *,
                     cache_dir=None, use_cache: bool = True, batch_size: int = 256,
                     normalized: bool = True, show_progress: bool = False,
                     transform: EvalTransform | None = None,
                     ) -> tuple[FeatureSet, dict[str, Any]]:  # fmt: skip
    """One dataset's features through the feature cache, and where they came from
    (``transform``: see :func:`compute_features`)."""
    from pathlib import Path

    from sslkit.features.cache import cached_features, default_cache_dir

    def compute() -> FeatureSet:
        return compute_features(network, dataset, device, batch_size, normalized=normalized,
                                show_progress=show_progress, transform=transform)

    if use_cache:
        folder = Path(cache_dir) if cache_dir else default_cache_dir()
        view = transform or eval_transform_for(network, dataset)
        provenance = provenance_of(network, dataset, view, normalized)
        features, hit, path = cached_features(folder, provenance, compute)
    else:
        features, hit, path = compute(), False, None
    return features, {"cache_hit": hit, "cache_file": str(path) if path else None,
                      **features.attrs}  # fmt: skip


def load_dataset(spec: str, split: str, network: FeatureNetwork, download: bool = False,
                 skip_bad_images: bool = False) -> ImageDataset:  # fmt: skip
    """The dataset split, loaded at the image size the checkpoint was trained with (image
    folders; in-memory data keep theirs and are resized by the evaluation view)."""
    config = network.encoder.config or {}
    view = network.trained_view()
    image_size = (config.get("data") or {}).get("image_size") or (view.size if view else None)
    return load_split(spec, split, download=download, image_size=image_size,
                      skip_bad_images=skip_bad_images)  # fmt: skip
