"""Typed validation of a resolved configuration: every value's type and range, in one place.

:func:`validate` runs once, on the merged config (defaults < recipe < flags < ``--set``),
before anything is built or written. A wrong value is bad input naming the key, the value
and what would be right (``train.lr='abc': expected a number > 0, e.g. --set
train.lr=0.03``); a right one comes back in its canonical type (``epochs: 5.0`` -> ``5``).
The ``train``, ``data`` and ``model`` sections have fixed rules here; the ``method``
section's rules come from the method's ``Config`` fields (their defaults' types, and the
ranges ``sslkit.methods.base.hp`` declares); the ``augment`` section's from its defaults.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from sslkit.errors import BadInput


@dataclass(frozen=True)
class Rule:
    """What one config value may be.

    ``kind`` is ``int``, ``float``, ``bool``, ``str``, ``list`` or ``any``; numbers lie in
    ``[low, high]`` and above ``above`` (exclusive); ``choices`` lists the allowed strings;
    ``optional`` allows ``None``; ``items`` is the rule of every element of a list and
    ``length`` its required length.
    """

    kind: str
    low: float | None = None
    high: float | None = None
    above: float | None = None
    choices: tuple[str, ...] | None = None
    optional: bool = False
    items: Rule | None = None
    length: int | None = None

    def describe(self) -> str:
        """The rule in words: ``an integer >= 1``, ``one of sgd, lars``, ..."""
        if self.choices:
            text = "one of " + ", ".join(self.choices)
        elif self.kind == "list":
            text = f"a list of {self.length} values" if self.length else "a list"
            if self.items is not None:
                text += f", each {self.items.describe()}"
        else:
            text = {"int": "an integer", "float": "a number", "bool": "true or false",
                    "str": "a string", "any": "a value"}[self.kind]  # fmt: skip
            bounds = [f">= {_plain(self.low)}" if self.low is not None else "",
                      f"> {_plain(self.above)}" if self.above is not None else "",
                      f"<= {_plain(self.high)}" if self.high is not None else ""]  # fmt: skip
            text = " ".join([text, " and ".join(b for b in bounds if b)]).strip()
        return text + (" (or null)" if self.optional else "")


def _plain(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)


POSITIVE_INT = Rule("int", low=1)
COUNT = Rule("int", low=0)
POSITIVE = Rule("float", above=0)
NON_NEGATIVE = Rule("float", low=0)
FLAG = Rule("bool")
PROBABILITY = Rule("float", low=0, high=1)

TRAIN_RULES: dict[str, Rule] = {
    "epochs": POSITIVE_INT,
    "batch_size": POSITIVE_INT,
    "lr": POSITIVE,
    "lr_scaling": Rule("str", choices=("none", "linear")),
    "reference_batch_size": POSITIVE_INT,
    "optimizer": Rule("str", choices=("sgd", "lars")),
    "momentum": NON_NEGATIVE,
    "weight_decay": NON_NEGATIVE,
    "schedule": Rule("str", choices=("cosine", "step", "constant")),
    "schedule_unit": Rule("str", choices=("epoch", "step")),
    "milestones": Rule("list", items=NON_NEGATIVE),
    "gamma": POSITIVE,
    "final_lr_ratio": NON_NEGATIVE,
    "warmup_epochs": NON_NEGATIVE,
    "warmup_start": NON_NEGATIVE,
    "checkpoint_every": COUNT,
    "checkpoint_every_steps": COUNT,
    "checkpoint_every_minutes": NON_NEGATIVE,
    "keep_checkpoints": FLAG,
    "log_every": POSITIVE_INT,
    "plot_curves": FLAG,
    "tensorboard": FLAG,
    "knn_monitor_every": COUNT,
    "knn_monitor_k": POSITIVE_INT,
    "knn_monitor_temperature": POSITIVE,
    "num_workers": COUNT,
    "amp": FLAG,
    "channels_last": FLAG,
    "seed": Rule("int", low=0, high=2**63 - 1),
    "device": Rule("str"),
}
DATA_RULES: dict[str, Rule] = {
    "spec": Rule("str"),
    "download": FLAG,
    "image_size": Rule("int", low=1, optional=True),
    "skip_bad_images": FLAG,
}
MODEL_RULES: dict[str, Rule] = {"arch": Rule("str", optional=True)}
AUGMENT_RULES: dict[str, Rule] = {
    "size": Rule("int", low=1, optional=True),
    "crop_scale": Rule("list", items=Rule("float", above=0, high=1), length=2),
    "jitter": Rule("list", items=NON_NEGATIVE, length=4),
    "blur_sigma": Rule("list", items=POSITIVE, length=2),
}


def validate(config: dict[str, Any], method_cls: type) -> dict[str, Any]:
    """``config`` with every value checked and in its canonical type; bad input otherwise."""
    checked = dict(config)
    for section, rules in (("train", TRAIN_RULES), ("data", DATA_RULES),
                           ("model", MODEL_RULES)):  # fmt: skip
        checked[section] = _check_section(section, config.get(section, {}), rules)
    checked["augment"] = _check_section("augment", config.get("augment", {}),
                                        augment_rules(method_cls.default_augment))  # fmt: skip
    checked["method"] = _check_section("method", config.get("method", {}),
                                       method_rules(method_cls))  # fmt: skip
    return checked


def _check_section(section: str, values: Any, rules: dict[str, Rule]) -> dict[str, Any]:
    if not isinstance(values, dict):
        raise BadInput(f"config section '{section}' must be a mapping of keys to values, "
                       f"not {_shown(values)}")  # fmt: skip
    return {key: check_value(f"{section}.{key}", value, rules[key]) if key in rules else value
            for key, value in values.items()}  # fmt: skip


def check_value(where: str, value: Any, rule: Rule) -> Any:
    """``value`` in the canonical type of ``rule``; :class:`BadInput` naming ``where``."""
    if value is None:
        if rule.optional or rule.kind == "any":
            return None
        raise _bad(where, value, rule)
    if rule.kind == "any":
        return value
    if rule.kind == "bool":
        if not isinstance(value, bool):
            raise _bad(where, value, rule)
        return value
    if rule.kind == "str":
        if not isinstance(value, str) or (rule.choices and value not in rule.choices):
            raise _bad(where, value, rule)
        return value
    if rule.kind == "list":
        if not isinstance(value, list | tuple):
            raise _bad(where, value, rule)
        if rule.length is not None and len(value) != rule.length:
            raise _bad(where, value, rule)
        if rule.items is None:
            return list(value)
        try:
            return [check_value(where, item, rule.items) for item in value]
        except BadInput:
            raise _bad(where, value, rule) from None
    number = _number(value, integer=rule.kind == "int")
    if number is None or not _in_range(number, rule):
        raise _bad(where, value, rule)
    return number


def _number(value: Any, integer: bool) -> int | float | None:
    """``value`` as an int (integral floats too) or a finite float; None if it is neither."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value):
        return None
    if integer:
        return int(value) if float(value).is_integer() and abs(value) < 2**63 else None
    return float(value)


def _in_range(number: float, rule: Rule) -> bool:
    return ((rule.low is None or number >= rule.low)
            and (rule.high is None or number <= rule.high)
            and (rule.above is None or number > rule.above))  # fmt: skip


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _bad(where: str, value: Any, rule: Rule) -> BadInput:
    return BadInput(f"bad config value {where}={_shown(value)}: expected {rule.describe()} "
                    f"(set it with --set {where}=VALUE or in the recipe)")  # fmt: skip


def augment_rules(defaults: dict[str, Any]) -> dict[str, Rule]:
    """Fixed rules for the common keys; ``*_prob`` keys are probabilities (or lists of them,
    one per view, where the method's default is a list); any other key takes the kind of
    its default."""
    rules = dict(AUGMENT_RULES)
    for key, default in defaults.items():
        if key in rules:
            continue
        if key.endswith("_prob"):
            rules[key] = (Rule("list", items=PROBABILITY, length=len(default))
                          if isinstance(default, list) else PROBABILITY)  # fmt: skip
        else:
            rules[key] = rule_for(default, {})
    return rules


def method_rules(method_cls: type) -> dict[str, Rule]:
    """One rule per field of the method's ``Config``: the default's type (numbers >= 0 unless
    the field declares its range with ``hp(..., low=, high=, above=, choices=)``)."""
    rules: dict[str, Rule] = {"name": Rule("str")}
    for field in dataclasses.fields(method_cls.Config):
        default = field.default
        if default is dataclasses.MISSING and field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        rules[field.name] = rule_for(default, field.metadata, field.type)
    return rules


def rule_for(default: Any, metadata: Any, annotation: Any = None) -> Rule:
    """The rule of a hyper-parameter with this default, ``hp`` metadata and annotation."""
    bounds = {key: metadata.get(key) for key in ("low", "high", "above", "choices")}
    if bounds["choices"] is not None:
        bounds["choices"] = tuple(bounds["choices"])
    if isinstance(default, bool):
        return FLAG
    if isinstance(default, int | float):
        if bounds["low"] is None and bounds["above"] is None:
            bounds["low"] = 0
        kind = "float" if annotation in ("float", float) or isinstance(default, float) else "int"
        return Rule(kind, **bounds)
    if isinstance(default, str):
        return Rule("str", choices=bounds["choices"])
    if isinstance(default, list | tuple):
        return Rule("list")
    return Rule("any")
