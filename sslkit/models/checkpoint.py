"""Checkpoint files: sslkit's own format, plain torchvision state dicts, MoCo/PCL/HCSC releases.

Every file is read with ``torch.load(weights_only=True)``: no pickle code ever runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sslkit.errors import BadInput
from sslkit.models.backbones import build_backbone, infer_arch
from sslkit.utils.atomic import atomic_path, sha256_file

FORMAT_TAG = "sslkit.checkpoint"
FORMAT_VERSION = 1
RELEASE_PREFIXES = ("module.encoder_q.", "encoder_q.", "module.encoder.", "module.backbone.")


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write a checkpoint atomically (temporary file + rename)."""
    payload = {"format": FORMAT_TAG, "version": FORMAT_VERSION, **payload}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def read_checkpoint(path: str | Path, mmap: bool = False) -> dict[str, Any]:
    """Load any checkpoint file safely; unreadable files are bad input.

    ``mmap=True`` maps the tensors instead of reading them (files written by
    ``torch.save``'s zip format; others are read normally): only what is used is read.
    """
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"checkpoint {path} not found: pass the path of a .pt file")
    try:
        try:
            data = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
        except RuntimeError:
            if not mmap:
                raise
            data = torch.load(path, map_location="cpu", weights_only=True)  # legacy format
    except Exception as exc:  # torch raises many types for corrupt or foreign files
        raise BadInput(unreadable_checkpoint(path, exc)) from exc
    if not isinstance(data, dict):
        raise BadInput(f"{path} is not a checkpoint (a {type(data).__name__}, not a dict)")
    return data


def unreadable_checkpoint(path: Path, exc: BaseException) -> str:
    """The plain message for a file ``torch.load(weights_only=True)`` refused: a file that
    holds pickled Python objects (code), or one that is no checkpoint at all (random bytes,
    a truncated or otherwise damaged file, another format)."""
    text = str(exc)
    if "GLOBAL" in text or "Unsupported global" in text:  # a pickled class or function
        return (f"cannot read checkpoint {path}: it holds Python objects besides tensors, "
                "which sslkit never unpickles (they could run code); save the weights as a "
                "plain state dict, or use a checkpoint written by sslkit pretrain")
    return (f"cannot read checkpoint {path}: the file is not a readable PyTorch checkpoint "
            "(truncated, damaged, or another format); pass a checkpoint.pt written by "
            "sslkit pretrain or by torch.save")


def is_sslkit_checkpoint(data: dict[str, Any]) -> bool:
    """True for files written by :func:`save_checkpoint`."""
    return data.get("format") == FORMAT_TAG


def _strip(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def encoder_state(data: dict[str, Any]) -> tuple[dict[str, torch.Tensor], str]:
    """The backbone's state dict in torchvision naming, and the detected format name.

    Formats: sslkit (``encoder``), official releases with ``state_dict`` keys prefixed
    ``module.encoder_q.`` (MoCo/PCL/HCSC/CLD/LoGo) or ``module.encoder.`` (SimSiam), and
    plain torchvision state dicts. Heads (``fc.*``) are dropped.
    """
    if is_sslkit_checkpoint(data):
        return dict(data["encoder"]), "sslkit"
    state = data.get("state_dict", data.get("model", data))
    if not isinstance(state, dict):
        raise BadInput("checkpoint of the wrong kind: no state dict inside")
    for prefix in RELEASE_PREFIXES:
        stripped = _strip(state, prefix)
        if "conv1.weight" in stripped:
            return {k: v for k, v in stripped.items() if not k.startswith("fc.")}, "release"
    if "conv1.weight" in state and all(isinstance(v, torch.Tensor) for v in state.values()):
        return {k: v for k, v in state.items() if not k.startswith("fc.")}, "torchvision"
    raise BadInput(
        "checkpoint of the wrong kind: expected an sslkit checkpoint, a torchvision ResNet "
        "state dict or a MoCo/PCL/HCSC release (module.encoder_q.*)"
    )


@dataclass
class LoadedEncoder:
    """A checkpoint's encoder weights and where they came from.

    The network itself is built on first use of :meth:`build_backbone`, so a caller that
    only needs the provenance (a feature-cache hit) never pays for it.
    """

    path: Path
    state: dict[str, torch.Tensor]
    arch: str
    source_format: str
    sha256: str
    method: str | None
    config: dict[str, Any] | None
    checkpoint: dict[str, Any]
    kind: str = "online"  # or "momentum": the momentum encoder's backbone

    def build_backbone(self) -> nn.Module:
        """A new backbone of :attr:`arch` with the checkpoint's weights (loaded strictly)."""
        backbone = build_backbone(self.arch)
        try:
            backbone.load_state_dict(self.state, strict=True)
        except RuntimeError as exc:
            raise BadInput(
                f"checkpoint {self.path} does not fit arch '{self.arch}' "
                f"({str(exc).splitlines()[0]}): pass the right --arch"
            ) from exc
        return backbone


ENCODERS = ("online", "momentum")
MOMENTUM_PREFIX = "target.backbone."  # sslkit: the momentum backbone inside method_state
RELEASE_MOMENTUM_PREFIXES = ("module.encoder_k.", "encoder_k.")


def momentum_encoder_state(data: dict[str, Any], path: str | Path) -> dict[str, torch.Tensor]:
    """The momentum (key / target) encoder's backbone in torchvision naming.

    sslkit checkpoints keep it in the method state (MoCo, PCL, HCSC, BYOL: ``target``),
    official MoCo/PCL/HCSC releases as ``module.encoder_k.*``.
    """
    if is_sslkit_checkpoint(data):
        state = _strip(data.get("method_state") or {}, MOMENTUM_PREFIX)
    else:
        raw = data.get("state_dict", data.get("model", data))
        state = {}
        for prefix in RELEASE_MOMENTUM_PREFIXES:
            state = _strip(raw, prefix) if isinstance(raw, dict) else {}
            if "conv1.weight" in state:
                break
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    if "conv1.weight" not in state:
        raise BadInput(f"{path} holds no momentum encoder (MoCo, PCL, HCSC and BYOL keep one): "
                       "use --encoder online")  # fmt: skip
    return state


def load_encoder(path: str | Path, arch: str | None = None,
                 encoder: str = "online") -> LoadedEncoder:  # fmt: skip
    """Read a checkpoint's encoder (tensors memory-mapped) and identify its format and arch.

    ``encoder="momentum"`` reads the momentum encoder's backbone instead of the online
    (query) one; :attr:`LoadedEncoder.kind` says which was read.
    """
    if encoder not in ENCODERS:
        raise BadInput(f"unknown encoder '{encoder}': use online or momentum")
    data = read_checkpoint(path, mmap=True)
    state, source = encoder_state(data)
    if encoder == "momentum":
        state = momentum_encoder_state(data, path)
    return LoadedEncoder(
        path=Path(path),
        state=state,
        arch=arch or data.get("arch") or infer_arch(state),
        source_format=source,
        sha256=sha256_file(path),
        method=data.get("method"),
        config=data.get("config"),
        checkpoint=data,
        kind=encoder,
    )
