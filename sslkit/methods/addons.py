"""Add-ons: loss terms a base method takes on without either knowing the other (CLD, ...).

``sslkit pretrain --method moco+cld`` trains MoCo with the CLD add-on. An add-on is an
``nn.Module`` subclass of :class:`AddOn`, registered under the entry-point group
``sslkit.addons`` (as methods are under ``sslkit.methods``), with:

* ``name`` and a ``Config`` dataclass (its hyper-parameters, set as
  ``method.<addon>_<field>``, e.g. ``--set method.cld_weight=0.25``);
* ``online_views_needed``: how many online representations per step it reads;
* :meth:`AddOn.terms`: named loss terms from the host's representations; the total adds
  ``weight x term`` and the logs show ``loss/<term>`` unweighted.

The host is any :class:`~sslkit.methods.base.Method` that runs at least that many views
through its :attr:`~sslkit.methods.base.Method.backbone` with gradient per step and says
so in :meth:`~sslkit.methods.base.Method.online_views`. :func:`compose` builds the
combined method class: a subclass of the base (so the base's behaviour, state and
checkpoint keys are unchanged) whose ``training_step`` records the backbone's outputs
(the shared representation ``h`` of each online view, in the order the base computes
them) with a forward hook and adds the add-ons' terms. The momentum or EMA copies a base
makes of its encoder are other modules, so their forwards are not recorded.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any, ClassVar

import torch
from torch import nn

from sslkit.errors import BadInput
from sslkit.methods.base import Batch, Method, StepContext

GROUP = "sslkit.addons"


class AddOn(nn.Module):
    """Base class of add-on loss terms (see the module docstring)."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    online_views_needed: ClassVar[int] = 1

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

    def terms(self, representations: list[torch.Tensor], batch: Batch,
              ctx: StepContext) -> dict[str, torch.Tensor]:  # fmt: skip
        """Named loss terms from the host's online representations (``B x feature_dim``)."""
        raise TypeError(f"{type(self).__name__} must define terms")


class RepresentationRecorder:
    """Records a module's outputs while :meth:`recording` and gradients are enabled."""

    def __init__(self, module: nn.Module) -> None:
        self.outputs: list[torch.Tensor] = []
        self.active = False
        module.register_forward_hook(self._hook)

    def _hook(self, _module, _inputs, output) -> None:
        if self.active and torch.is_grad_enabled():
            self.outputs.append(output)

    @contextlib.contextmanager
    def recording(self) -> Iterator[list[torch.Tensor]]:
        """Collect the outputs of the forwards run inside the block (cleared on entry)."""
        self.outputs = []
        self.active = True
        try:
            yield self.outputs
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
        needed = max(cls.online_views_needed for cls in self.addon_classes)
        if self.online_views() < needed:
            raise BadInput(f"{self.name}: the add-ons read {needed} online views per step but "
                           f"this {self.name.split('+')[0]} set-up computes "
                           f"{self.online_views()}: give the base more query views (for MoCo "
                           "--set method.queries=2)")  # fmt: skip
        self._recorder = RepresentationRecorder(self.backbone)

    def training_step(self, batch: Batch, ctx: StepContext) -> dict[str, torch.Tensor]:
        """The base method's step, plus every add-on's weighted terms."""
        with self._recorder.recording() as representations:
            output = super().training_step(batch, ctx)
        representations = list(representations)
        for addon in self.addons.values():
            for term, value in addon.terms(representations, batch, ctx).items():
                output["loss"] = output["loss"] + addon.weight * value
                output[f"loss/{term}"] = value.detach()
        return output


def addon_config(addon_cls: type[AddOn], config: Any):
    """An add-on's ``Config`` from the ``<addon>_<field>`` fields of the combined config."""
    values = {field.name: getattr(config, f"{addon_cls.name}_{field.name}")
              for field in dataclasses.fields(addon_cls.Config)}  # fmt: skip
    return addon_cls.Config(**values)


def compose(base_cls: type[Method], addon_classes: list[type[AddOn]]) -> type[Method]:
    """The method class ``base+addon1+...``: the base with the add-ons' terms and fields."""
    fields = []
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
    return type(f"{base_cls.__name__}With" + "".join(cls.__name__ for cls in addon_classes),
                (AddOnHost, base_cls),
                {"name": name, "description": description, "Config": config_cls,
                 "addon_classes": tuple(addon_classes), "__module__": base_cls.__module__})
