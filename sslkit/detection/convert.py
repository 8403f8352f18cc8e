"""Export a checkpoint's encoder as a detectron2 weight file (``backbone.pkl``).

The renaming is MoCo's ``convert-pretrain-to-detectron2.py`` applied to torchvision names:
names without ``layer`` get a ``stem.`` prefix, ``layer1..4`` become
``res2..5``, ``bnK`` becomes ``convK.norm``, ``downsample.0/.1`` become ``shortcut`` and
``shortcut.norm``. Only the backbone is written: :func:`sslkit.models.checkpoint.load_encoder`
keeps the query encoder alone (no key encoder, queue or projection head), unlike HCSC's
copy of the converter, whose ``pass`` where ``continue`` was meant converts every key.

The pickle is ``{"model": {name: ndarray}, "__author__": "sslkit", "matching_heuristics":
True}``: any author but "Caffe2" marks a file already in detectron2 naming, and the
heuristics match names by suffix, so ``res5.*`` lands in a C4 model's ``roi_heads.res5``.
"""

from __future__ import annotations

import pickle
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sslkit.errors import BadInput

#: Archs whose torchvision ResNet matches detectron2's (7x7 stride-2 stem + max-pool).
EXPORTABLE_ARCHS = {"resnet18": 18, "resnet34": 34, "resnet50": 50}
AUTHOR = "sslkit"
_LAYER = re.compile(r"^layer([1-4])\.")
_BN = re.compile(r"(^|\.)bn([1-3])\.")


@dataclass(frozen=True)
class ExportInfo:
    """What :func:`export_backbone` wrote and where its weights came from."""

    path: Path
    checkpoint: Path
    arch: str
    depth: int
    source_format: str
    sha256: str
    num_tensors: int

    def as_dict(self) -> dict:
        """Plain types for JSON."""
        return {"path": str(self.path), "checkpoint": str(self.checkpoint), "arch": self.arch,
                "depth": self.depth, "source_format": self.source_format,
                "sha256": self.sha256, "num_tensors": self.num_tensors}  # fmt: skip


def detectron2_name(key: str) -> str:
    """The detectron2 name of a torchvision ResNet key (``layer1.0.bn2.weight`` ->
    ``res2.0.conv2.norm.weight``, ``bn1.bias`` -> ``stem.conv1.norm.bias``)."""
    if not _LAYER.match(key):
        key = "stem." + key
    key = _LAYER.sub(lambda m: f"res{int(m.group(1)) + 1}.", key)
    key = _BN.sub(lambda m: f"{m.group(1)}conv{m.group(2)}.norm.", key)
    return key.replace("downsample.0.", "shortcut.").replace("downsample.1.", "shortcut.norm.")


def _array(tensor: torch.Tensor) -> np.ndarray:
    """A tensor's values as a numpy array (bfloat16, which numpy lacks, as float32)."""
    tensor = tensor.detach().cpu()
    if tensor.dtype == torch.bfloat16:
        tensor = tensor.float()
    return tensor.numpy().copy()


def convert_state(state: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Rename a torchvision-named ResNet state dict for detectron2; values as numpy arrays."""
    renamed = {detectron2_name(key): _array(value) for key, value in state.items()}
    if len(renamed) != len(state):
        raise BadInput("two encoder keys map to one detectron2 name: not a torchvision ResNet")
    return renamed


def expected_keys(arch: str) -> dict[str, tuple[int, ...]]:
    """Every parameter and buffer name of ``arch``'s backbone with its shape (built on meta)."""
    from sslkit.models.backbones import build_backbone

    with torch.device("meta"):
        backbone = build_backbone(arch)
    return {key: tuple(value.shape) for key, value in backbone.state_dict().items()}


def check_backbone(state: dict[str, torch.Tensor], arch: str) -> None:
    """Refuse anything but exactly the parameters and buffers of an exportable ResNet."""
    if arch not in EXPORTABLE_ARCHS:
        raise BadInput(f"arch '{arch}' cannot go to detectron2, whose ResNets have the ImageNet "
                       f"stem: use a checkpoint of {', '.join(EXPORTABLE_ARCHS)}")  # fmt: skip
    expected = expected_keys(arch)
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        what = f"missing {missing[0]}" if missing else f"unexpected {extra[0]}"
        raise BadInput(f"the encoder is not a complete {arch} ({what}): pass the right --arch")
    for key, shape in expected.items():
        found = tuple(state[key].shape)
        if found != shape:
            raise BadInput(f"the encoder does not fit {arch} ({key} has shape {found}, not "
                           f"{shape}): pass the right --arch")  # fmt: skip


def write_pickle(weights: dict[str, np.ndarray], path: str | Path) -> Path:
    """Write detectron2's weight-file dict atomically; returns the path."""
    from sslkit.utils.atomic import atomic_path

    payload = {"model": weights, "__author__": AUTHOR, "matching_heuristics": True}
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        pickle.dump(payload, handle, protocol=pickle.HIGHEST_PROTOCOL)
    return Path(path)


def read_backbone(checkpoint: str | Path, arch: str | None = None):
    """The checkpoint's encoder (a ``LoadedEncoder``), checked to be an exportable ResNet."""
    from sslkit.models.checkpoint import load_encoder

    loaded = load_encoder(checkpoint, arch)
    check_backbone(loaded.state, loaded.arch)
    return loaded


def write_backbone(loaded, out_path: str | Path) -> ExportInfo:
    """Write a :func:`read_backbone` result as detectron2 weights; what was written."""
    weights = convert_state(loaded.state)
    path = write_pickle(weights, out_path)
    return ExportInfo(path=path, checkpoint=loaded.path, arch=loaded.arch,
                      depth=EXPORTABLE_ARCHS[loaded.arch], source_format=loaded.source_format,
                      sha256=loaded.sha256, num_tensors=len(weights))  # fmt: skip


def export_backbone(checkpoint: str | Path, out_path: str | Path,
                    arch: str | None = None) -> ExportInfo:  # fmt: skip
    """Read any checkpoint sslkit reads, check its encoder, write it as detectron2 weights."""
    return write_backbone(read_backbone(checkpoint, arch), out_path)
