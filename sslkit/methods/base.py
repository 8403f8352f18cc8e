"""The method plugin contract.

A method is an ``nn.Module`` subclass of :class:`Method`, registered under the entry-point
group ``sslkit.methods``. It declares

* ``Config`` — a dataclass of its hyper-parameters (defaults and a ``help`` per field);
* ``default_train`` / ``default_augment`` — its recipe's optimiser and augmentation values;
* :meth:`views` — the crops it needs per image;
* :meth:`training_step` — a batch of views -> named loss terms (``"loss"`` is optimised);

and may override the optional hooks :meth:`param_groups`, :meth:`on_epoch_start`,
:meth:`inner_step` and :meth:`after_optimizer_step`. State that ``--resume`` needs (queues,
memory banks, clustering results, extra optimisers) lives in buffers or in
``get_extra_state``. A method never opens files, parses flags or picks a device: the
engine does that and hands it a :class:`StepContext` / :class:`EpochContext`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from sslkit.data.base import DataInfo
from sslkit.data.views import ViewSpec, view_spec_from_config
from sslkit.distributed import DistEnv


@dataclass
class Batch:
    """One training batch on the device: augmented views and dataset indices."""

    views: list[torch.Tensor]
    indices: torch.Tensor


@dataclass
class StepContext:
    """What a training step may know: position in training, ranks, its random generator."""

    epoch: int
    step: int
    epochs: int
    steps_per_epoch: int
    lr_factor: float
    dist: DistEnv
    generator: torch.Generator
    lr: float = 0.0  # the main optimiser's lr at this step (base lr x lr_factor)


@dataclass
class EpochContext:
    """What ``on_epoch_start`` may use, e.g. to cluster the whole training set (PCL, HCSC).

    ``extract_features(module)`` embeds every training image (un-augmented evaluation
    view) with ``module`` in eval mode and returns an ``N x D`` float32 tensor on the
    device in dataset order, identical on every rank.
    """

    epoch: int
    epochs: int
    dist: DistEnv
    generator: torch.Generator
    extract_features: Callable[[nn.Module], torch.Tensor]


COMMON_AUGMENT: dict[str, Any] = {
    "size": None,  # crop side in pixels; None = the dataset's image size
    "crop_scale": [0.2, 1.0],
    "flip_prob": 0.5,
    "jitter_prob": 0.8,
    "jitter": [0.4, 0.4, 0.4, 0.1],  # brightness, contrast, saturation, hue
    "grayscale_prob": 0.2,
    "blur_prob": 0.5,
    "blur_sigma": [0.1, 2.0],  # pixels at 224 px; scaled to the crop size
    "erase_prob": 0.0,
    "solarize_prob": 0.0,
}


class Method(nn.Module):
    """Base class of every self-supervised method (see the module docstring)."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    default_train: ClassVar[dict[str, Any]] = {}
    default_augment: ClassVar[dict[str, Any]] = COMMON_AUGMENT
    sync_batchnorm: ClassVar[bool] = False  # SyncBatchNorm across CUDA processes (SimSiam)
    #: Config values for ``sslkit.testing.check_method``'s tiny synthetic data (16 px images,
    #: 64 of them, batches of 8): e.g. a small queue. Not used for training.
    check_settings: ClassVar[dict[str, Any]] = {}

    @dataclass
    class Config:
        """Hyper-parameters of the method (subclasses replace this dataclass)."""

    def __init__(self, config: Any, backbone: nn.Module, data_info: DataInfo) -> None:
        super().__init__()
        self.config = config
        self.data_info = data_info
        self.backbone = backbone

    # -- what the engine asks -------------------------------------------------------
    def views(self, augment: dict[str, Any]) -> ViewSpec:
        """The crops per image: by default two identical views from ``augment``."""
        return view_spec_from_config(augment, self.data_info, count=2)

    def param_groups(self) -> list[dict[str, Any]]:
        """Optimiser groups; keys ``params``, optional ``lr_scale`` (x lr) and ``fixed_lr``.

        ``fixed_lr=True`` keeps the group at its initial lr (SimSiam's predictor).
        """
        return [{"params": [p for p in self.parameters() if p.requires_grad]}]

    def training_step(self, batch: Batch, ctx: StepContext) -> dict[str, torch.Tensor]:
        """Return ``{"loss": total, "loss/<term>": detached term, ...}`` for one batch."""
        raise NotImplementedError(f"{type(self).__name__} must define training_step")

    def forward(self, batch: Batch, ctx: StepContext) -> dict[str, torch.Tensor]:
        """Calls :meth:`training_step` (so DistributedDataParallel can wrap the method)."""
        return self.training_step(batch, ctx)

    def on_epoch_start(self, ctx: EpochContext) -> None:
        """Optional: work at the start of every epoch (e.g. cluster all features)."""

    def inner_step(self, batch: Batch, ctx: StepContext) -> dict[str, float]:
        """Optional: updates with the method's own optimisers before the main step."""
        return {}

    def after_optimizer_step(self, ctx: StepContext) -> None:
        """Optional: work after the optimiser step (momentum update, memory bank)."""

    def online_views(self) -> int:
        """How many views per step go through :attr:`backbone` with gradient (add-ons such
        as CLD read the first two of those representations)."""
        return 1

    def local_views(self) -> int:
        """How many of the views are local (small) crops; they come last in ``batch.views``
        and are computed last (LoGo reads them)."""
        return 0

    def embedding_head(self) -> nn.Module | None:
        """The module mapping the backbone feature to the embedding that :meth:`embed`
        normalises (add-ons may read its outputs); ``None`` when there is none."""
        return None

    def embedding_dim(self) -> int:
        """Dimension of :meth:`embed`'s output."""
        return int(self.backbone.feature_dim)

    def update_target(self, ctx: StepContext) -> None:
        """Optional: one momentum (EMA) update of the method's target networks, if any."""

    def ddp_ignored_parameters(self) -> list[str]:
        """Names of parameters DistributedDataParallel must leave alone (trained by the
        method's own optimisers, which synchronise them themselves)."""
        return []

    def encoder(self) -> nn.Module:
        """The backbone that is exported and evaluated (the online/query encoder)."""
        return self.backbone

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """The method's L2-normalised embedding (``--layer head``); default: the backbone's."""
        return F.normalize(self.backbone(images), dim=1)

    # -- helpers -------------------------------------------------------------------
    @classmethod
    def hyperparameters(cls) -> list[tuple[str, Any, str]]:
        """``(name, default, help)`` of every field of ``Config``."""
        rows = []
        for field in dataclasses.fields(cls.Config):
            default = field.default
            if default is dataclasses.MISSING and field.default_factory is not dataclasses.MISSING:
                default = field.default_factory()
            rows.append((field.name, default, field.metadata.get("help", "")))
        return rows


def hp(default: Any, help: str, *, low: float | None = None,  # noqa: A002 - argparse's word
       high: float | None = None, above: float | None = None,
       choices: tuple[str, ...] | None = None) -> Any:  # fmt: skip
    """A ``Config`` field with a default and a one-line description.

    ``low``/``high`` (inclusive) and ``above`` (exclusive) bound a number, ``choices`` lists
    the allowed strings; ``sslkit.config_schema`` checks every value against them before a
    run starts (numbers without bounds must be >= 0).
    """
    metadata = {"help": help, "low": low, "high": high, "above": above, "choices": choices}
    if isinstance(default, list | dict):
        return dataclasses.field(default_factory=lambda: type(default)(default),
                                 metadata=metadata)  # fmt: skip
    return dataclasses.field(default=default, metadata=metadata)
