"""Checkpoint + data spec + split -> a FeatureSet with provenance (used by extract and knn)."""

from __future__ import annotations

from typing import Any

import torch

from sslkit.data.base import ImageDataset
from sslkit.data.specs import load_split
from sslkit.features.extract import (
    EvalTransform,
    FeatureNetwork,
    embed_dataset,
    labels_and_indices,
)
from sslkit.features.store import FeatureSet


def eval_transform_for(network: FeatureNetwork, dataset: ImageDataset) -> EvalTransform:
    """The evaluation view: the training crop size of an sslkit run, else the image size."""
    config = network.encoder.config or {}
    size = (config.get("augment") or {}).get("size") or dataset.info.image_size
    return EvalTransform(int(size), dataset.info.mean, dataset.info.std)


def provenance_of(network: FeatureNetwork, dataset: ImageDataset,
                  transform: EvalTransform) -> dict[str, Any]:  # fmt: skip
    """Everything that determines a feature file's content."""
    return {
        **network.provenance(),
        "dataset": dataset.spec,
        "dataset_fingerprint": dataset.fingerprint(),
        "split": dataset.split,
        "transform": transform.describe(),
        "normalized": True,
    }


def compute_features(
    network: FeatureNetwork,
    dataset: ImageDataset,
    device: torch.device,
    batch_size: int = 256,
    num_workers: int = 0,
) -> FeatureSet:
    """Embed a dataset split (L2-normalised rows) and attach its provenance."""
    transform = eval_transform_for(network, dataset)
    module = network.network.to(device)
    if device.type == "cuda":
        module = module.to(memory_format=torch.channels_last)
    features = embed_dataset(module, dataset, transform, device, batch_size, num_workers)
    labels, indices = labels_and_indices(dataset)
    return FeatureSet(features.cpu().numpy(), labels, indices,
                      provenance_of(network, dataset, transform))  # fmt: skip


def load_dataset(spec: str, split: str, network: FeatureNetwork, download: bool = False):
    """The dataset split, loaded at the image size the checkpoint was trained with."""
    config = network.encoder.config or {}
    image_size = (config.get("data") or {}).get("image_size")
    return load_split(spec, split, download=download, image_size=image_size)
