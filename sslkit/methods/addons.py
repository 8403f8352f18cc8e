"""Add-ons: loss terms a base method takes on without either knowing the other (CLD, ...).

``sslkit pretrain --method moco+cld`` trains MoCo with the CLD add-on. An add-on is an
``nn.Module`` subclass of :class:`AddOn`, registered under the entry-point group
``sslkit.addons`` (as methods are under ``sslkit.methods``), with:

* ``name`` and a ``Config`` dataclass (its hyper-parameters, set as
  ``method.<addon>_<field>``, e.g. ``--set method.cld_weight=0.25``);
* ``online_views_needed`` / ``local_views_needed``: how many online representations and
  local crops per step it reads;
* :meth:`AddOn.terms`: named loss terms from what the host computed (:class:`Recorded`);
  the total adds ``weight x term`` and the logs show ``loss/<term>`` unweighted;
* optionally ``host_defaults`` / ``augment_defaults`` (the host settings it wants by
  default, e.g. LoGo's multi-crop), :meth:`AddOn.own_parameters` (trained by the
  add-on's own optimiser, so left out of the main one and of DDP), and the hooks
  :meth:`AddOn.on_epoch_start`, :meth:`AddOn.inner_step`,
  :meth:`AddOn.after_optimizer_step`, called with the host.

The host is any :class:`~sslkit.methods.base.Method` that runs at least that many views
through its :attr:`~sslkit.methods.base.Method.backbone` with gradient per step and says
so in :meth:`~sslkit.methods.base.Method.online_views` (and
:meth:`~sslkit.methods.base.Method.local_views`). :func:`compose` builds the combined
method class: a subclass of the base (so the base's behaviour, state and checkpoint keys
are unchanged) whose ``training_step`` records, with forward hooks, the backbone's
outputs (the shared representation ``h`` of each online view, in the order the base
computes them) and those of the base's
:meth:`~sslkit.methods.base.Method.embedding_head`, then adds the add-ons' terms. The
momentum or EMA copies a base makes of its encoder are other modules, so their forwards
are not recorded.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from sslkit.errors import BadInput
from sslkit.methods.base import Batch, EpochContext, Method, StepContext

GROUP = "sslkit.addons"


@dataclass
class Recorded:
    """What the host computed with gradient in one step, in the order it computed it.

    ``representations``: the backbone's outputs (``B x feature_dim``), one per online
    view; ``embeddings``: the outputs of the host's embedding head (un-normalised), one
    per online view (empty when the host has no embedding head).
    """

    representations: list[torch.Tensor] = dataclasses.field(default_factory=list)
    embeddings: list[torch.Tensor] = dataclasses.field(default_factory=list)


class AddOn(nn.Module):
    """Base class of add-on loss terms (see the module docstring)."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    online_views_needed: ClassVar[int] = 1
    local_views_needed: ClassVar[int] = 0
    host_defaults: ClassVar[dict[str, Any]] = {}  # host ``method`` fields it sets by default
    augment_defaults: ClassVar[dict[str, Any]] = {}  # ``augment`` values it sets by default
    check_settings: ClassVar[dict[str, Any]] = {}  # its fields for check_method's tiny data

    @dataclasses.dataclass
    class Config:
        """Hyper-parameters (subclasses replace this dataclass; keep a ``weight`` field)."""

        weight: float = 1.0

    def __init__(self, config: Any, host: Method) -> None:
        super().__init__()
        self.config = config
        self.feature_dim = int(host.backbone.feature_dim)

    @property
    def weight(self) -> float:
        """The factor of this add-on's terms in the total loss."""
        return float(self.config.weight)

    def terms(self, recorded: Recorded, batch: Batch,
              ctx: StepContext) -> dict[str, torch.Tensor]:  # fmt: skip
        """Named loss terms from what the host computed in this step."""
        raise TypeError(f"{type(self).__name__} must define terms")

    def own_parameters(self) -> list[nn.Parameter]:
        """Parameters the add-on trains with its own optimiser (none by default)."""
        return []

    def on_epoch_start(self, host: Method, ctx: EpochContext) -> None:
        """Optional: work at the start of every epoch."""

    def inner_step(self, host: Method, batch: Batch, ctx: StepContext) -> dict[str, float]:
        """Optional: the add-on's own updates before the main step; returns logged values."""
        return {}

    def after_optimizer_step(self, host: Method, ctx: StepContext) -> None:
        """Optional: work after the main optimiser step (its gradients are still there)."""


class OutputRecorder:
    """Records modules' outputs while :meth:`recording` and gradients are enabled."""

    def __init__(self, representation: nn.Module, embedding: nn.Module | None) -> None:
        self.recorded = Recorded()
        self.active = False
        representation.register_forward_hook(self._hook("representations"))
        if embedding is not None:
            embedding.register_forward_hook(self._hook("embeddings"))

    def _hook(self, stream: str):
        def record(_module, _inputs, output) -> None:
            if self.active and torch.is_grad_enabled():
                getattr(self.recorded, stream).append(output)

        return record

    @contextlib.contextmanager
    def recording(self) -> Iterator[Recorded]:
        """Collect the outputs of the forwards run inside the block (cleared on entry)."""
        self.recorded = Recorded()
        self.active = True
        try:
            yield self.recorded
        finally:
            self.active = False


class AddOnHost:
    """Mixin placed before the base method class by :func:`compose`."""

    addon_classes: ClassVar[tuple[type[AddOn], ...]] = ()

    def __init__(self, config: Any, backbone: nn.Module, data_info) -> None:
        super().__init__(config, backbone, data_info)
        self.addons = nn.ModuleDict({
            cls.name: cls(addon_config(cls, config), self) for cls in self.addon_classes
        })  # fmt: skip
        base = self.name.split("+")[0]
        local_needed = max(cls.local_views_needed for cls in self.addon_classes)
        if self.local_views() < local_needed:
            raise BadInput(f"{self.name}: the add-ons read {local_needed} local crops per step "
                           f"but this {base} set-up has {self.local_views()}: set "
                           "method.multi_crop=true with at least that many "
                           "method.local_crops")  # fmt: skip
        needed = max(cls.online_views_needed for cls in self.addon_classes)
        if self.online_views() < needed:
            raise BadInput(f"{self.name}: the add-ons read {needed} online views per step but "
                           f"this {base} set-up computes {self.online_views()}: give the base "
                           "more query views (for MoCo --set method.queries=2)")  # fmt: skip
        self._recorder = OutputRecorder(self.backbone, self.embedding_head())

    def training_step(self, batch: Batch, ctx: StepContext) -> dict[str, torch.Tensor]:
        """The base method's step, plus every add-on's weighted terms."""
        with self._recorder.recording() as recorded:
            output = super().training_step(batch, ctx)
        for addon in self.addons.values():
            for term, value in addon.terms(recorded, batch, ctx).items():
                output["loss"] = output["loss"] + addon.weight * value
                output[f"loss/{term}"] = value.detach()
        return output

    def _own_parameter_ids(self) -> set[int]:
        return {id(p) for addon in self.addons.values() for p in addon.own_parameters()}

    def param_groups(self) -> list[dict[str, Any]]:
        """The base's groups without the parameters the add-ons train themselves."""
        own = self._own_parameter_ids()
        groups = []
        for group in super().param_groups():
            params = [p for p in group["params"] if id(p) not in own]
            if params:
                groups.append({**group, "params": params})
        return groups

    def ddp_ignored_parameters(self) -> list[str]:
        """The base's, plus the parameters the add-ons train (and synchronise) themselves."""
        own = self._own_parameter_ids()
        names = [name for name, p in self.named_parameters() if id(p) in own]
        return [*super().ddp_ignored_parameters(), *names]

    def on_epoch_start(self, ctx: EpochContext) -> None:
        """The base's epoch start, then the add-ons'."""
        super().on_epoch_start(ctx)
        for addon in self.addons.values():
            addon.on_epoch_start(self, ctx)

    def inner_step(self, batch: Batch, ctx: StepContext) -> dict[str, float]:
        """The base's inner updates, then the add-ons'."""
        logged = dict(super().inner_step(batch, ctx))
        for addon in self.addons.values():
            logged.update(addon.inner_step(self, batch, ctx))
        return logged

    def after_optimizer_step(self, ctx: StepContext) -> None:
        """The add-ons' hooks (while the main step's gradients are there), then the base's."""
        for addon in self.addons.values():
            addon.after_optimizer_step(self, ctx)
        super().after_optimizer_step(ctx)


def addon_config(addon_cls: type[AddOn], config: Any):
    """An add-on's ``Config`` from the ``<addon>_<field>`` fields of the combined config."""
    values = {field.name: getattr(config, f"{addon_cls.name}_{field.name}")
              for field in dataclasses.fields(addon_cls.Config)}  # fmt: skip
    return addon_cls.Config(**values)


def compose(base_cls: type[Method], addon_classes: list[type[AddOn]]) -> type[Method]:
    """The method class ``base+addon1+...``: the base with the add-ons' terms and fields.

    The add-ons' ``host_defaults`` replace the defaults of the base's own fields (a host
    field an add-on names but the base lacks is bad input) and ``augment_defaults`` those
    of the ``augment`` section; explicit settings still win.
    """
    base_fields = {f.name: f for f in dataclasses.fields(base_cls.Config)}
    fields = []
    augment = dict(base_cls.default_augment)
    for addon_cls in addon_classes:
        for key, value in addon_cls.host_defaults.items():
            if key not in base_fields:
                raise BadInput(f"the {addon_cls.name} add-on needs a {base_cls.name} with "
                               f"method.{key}, which it has not: use a base that supports "
                               f"{addon_cls.name}")  # fmt: skip
            fields.append((key, base_fields[key].type,
                           _field_with_default(value, base_fields[key].metadata)))  # fmt: skip
        augment.update(addon_cls.augment_defaults)
    for addon_cls in addon_classes:
        for field in dataclasses.fields(addon_cls.Config):
            default = ({"default_factory": field.default_factory}
                       if field.default_factory is not dataclasses.MISSING
                       else {"default": field.default})  # fmt: skip
            fields.append((f"{addon_cls.name}_{field.name}", field.type,
                           dataclasses.field(**default, metadata=field.metadata)))  # fmt: skip
    name = "+".join([base_cls.name, *(cls.name for cls in addon_classes)])
    config_cls = dataclasses.make_dataclass(f"{base_cls.__name__}AddOnsConfig", fields,
                                            bases=(base_cls.Config,))  # fmt: skip
    config_cls.__doc__ = f"{base_cls.__name__} hyper-parameters plus those of the add-ons."
    description = f"{base_cls.name} + " + " + ".join(cls.description for cls in addon_classes)
    check_settings = {**base_cls.check_settings,
                      **{f"{cls.name}_{key}": value for cls in addon_classes
                         for key, value in cls.check_settings.items()}}  # fmt: skip
    return type(f"{base_cls.__name__}With" + "".join(cls.__name__ for cls in addon_classes),
                (AddOnHost, base_cls),
                {"name": name, "description": description, "Config": config_cls,
                 "default_augment": augment, "addon_classes": tuple(addon_classes),
                 "check_settings": check_settings, "__module__": base_cls.__module__})  # fmt: skip


def _field_with_default(value: Any, metadata) -> dataclasses.Field:
    """A dataclass field with ``value`` as its (copied, for lists and dicts) default."""
    if isinstance(value, list | dict):
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata=metadata)
    return dataclasses.field(default=value, metadata=metadata)
