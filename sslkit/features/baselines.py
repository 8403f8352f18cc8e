"""The references an evaluation is compared with (``--baselines``): raw pixels, and the
checkpoint's architecture at its random initialisation.

A self-supervised encoder is only worth its training if it beats what needs none: on small
images such as Fashion-MNIST, the raw pixels and an untrained network of the same
architecture are already strong kNN features. Both references go through the same
feature cache and evaluation protocol as the encoder they are compared with.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sslkit.data.base import ImageDataset
from sslkit.features.extract import EvalTransform, FeatureNetwork
from sslkit.models.backbones import build_backbone
from sslkit.models.checkpoint import LoadedEncoder

RAW_PIXELS_MAX_SIZE = 32  # larger images are resized (antialiased) to 32 x 32 first
RANDOM_INIT_SEED = 0
KINDS = ("raw_pixels", "random_init")


class RawPixels:
    """Images as features: their pixel values in [0, 1], C x H x W flattened.

    Images larger than :data:`RAW_PIXELS_MAX_SIZE` a side are resized to it (antialiased),
    so the vectors stay small enough to cache for large datasets.
    """

    layer = "pixels"
    bn_images = 0  # nothing to recompute: no BatchNorm

    def __init__(self) -> None:
        self.network: nn.Module = nn.Flatten()

    def transform(self, dataset: ImageDataset) -> EvalTransform:
        """The dataset's images at (at most) 32 px, not normalised."""
        size = min(dataset.info.image_size, RAW_PIXELS_MAX_SIZE)
        return EvalTransform(size, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))

    def provenance(self) -> dict[str, Any]:
        """What feature files and JSON results record about these features."""
        return {"checkpoint_sha256": "", "checkpoint_format": "raw-pixels", "method": "",
                "arch": "raw-pixels", "layer": self.layer}  # fmt: skip


def random_init_network(trained: FeatureNetwork, seed: int = RANDOM_INIT_SEED) -> FeatureNetwork:
    """``trained``'s architecture at its random initialisation (``torch.manual_seed(seed)``,
    torchvision's initialisation), backbone features in eval mode (BatchNorm statistics
    recomputed as ``trained``'s are, if they are).

    The global random state is left as it was. The weights' sha256 stands in for a
    checkpoint's in the feature cache's key, so the features are cached like any other.
    """
    arch = trained.encoder.arch
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        state = build_backbone(arch).state_dict()
    digest = hashlib.sha256()
    for key, tensor in state.items():
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    encoder = LoadedEncoder(path=Path(f"random-init-{arch}-seed{seed}"), state=state, arch=arch,
                            source_format="random-init", sha256=digest.hexdigest(), method=None,
                            config=trained.encoder.config, checkpoint={})  # fmt: skip
    return FeatureNetwork("backbone", encoder, bn_images=trained.bn_images, bn_data=trained.bn_data)
