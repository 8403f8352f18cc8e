"""Configuration: method defaults < recipe YAML < command-line flags < ``--set key=value``.

The resolved configuration is a plain nested dict (YAML-serialisable) with sections
``method``, ``data``, ``model``, ``augment`` and ``train``.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from sslkit.errors import BadInput

TRAIN_DEFAULTS: dict[str, Any] = {
    "epochs": 200,
    "batch_size": 256,  # total over all processes
    "lr": 0.03,
    "lr_scaling": "none",  # or "linear": lr x batch_size / reference_batch_size
    "reference_batch_size": 256,
    "optimizer": "sgd",
    "momentum": 0.9,
    "weight_decay": 1e-4,
    "schedule": "cosine",  # cosine | step | constant
    "schedule_unit": "epoch",  # epoch (MoCo/PCL/HCSC scripts) | step
    "milestones": [120, 160],
    "gamma": 0.1,
    "final_lr_ratio": 0.0,
    "warmup_epochs": 0,
    "warmup_start": 0.0,
    # Checkpoints: whichever comes first of every N epochs, every N steps (0 = off) and
    # every N minutes of training (0 = off), and always at the end of the run and when a
    # signal stops it (SIGTERM, SIGUSR1, SIGUSR2, Ctrl-C); see sslkit.engine.checkpointing.
    "checkpoint_every": 1,
    "checkpoint_every_steps": 0,
    "checkpoint_every_minutes": 15.0,
    "keep_checkpoints": False,  # also keep checkpoint_epochNNNN.pt at every epoch-end save
    "log_every": 10,
    "plot_curves": True,  # redraw WORKDIR/curves.png at every checkpoint (needs matplotlib)
    "tensorboard": False,  # also write the metrics to WORKDIR/tensorboard/ (needs tensorboard)
    "knn_monitor_every": 0,  # kNN top-1 (test vs train split) every N epochs; 0 = off
    "knn_monitor_k": 200,
    "knn_monitor_temperature": 0.07,
    "num_workers": 0,
    "amp": True,  # mixed precision, used on CUDA only
    "channels_last": True,
    "seed": 0,
    "device": "auto",
}


#: The package that holds the recipes: the repository's ``configs/``, mapped into sslkit.
RECIPES_PACKAGE = "sslkit.configs"


def recipes_dir() -> Path:
    """The folder of the recipes shipped with sslkit (``<method>/<dataset>.yaml``, and
    ``detectron2/``), found through importlib.resources in wheel and editable installs."""
    folder = resources.files(RECIPES_PACKAGE)
    if not isinstance(folder, Path):  # a zipped install: the recipes are no plain files
        raise RuntimeError(f"{RECIPES_PACKAGE} is not a folder ({folder}): install sslkit "
                           "with pip, which unpacks it")  # fmt: skip
    return folder


def recipe_names(method: str | None = None) -> list[str]:
    """The shipped recipes as ``--config`` names (``moco/digits``, ...), of one method or all
    (detectron2's configs are not recipes)."""
    pattern = f"{method}/*.yaml" if method else "*/*.yaml"
    paths = recipes_dir().glob(pattern)
    return sorted(f"{p.parent.name}/{p.stem}" for p in paths if p.parent.name != "detectron2")


def find_recipe(method: str, dataset: str) -> Path | None:
    """The shipped recipe for a method on a dataset, if there is one."""
    path = recipes_dir() / method / f"{dataset}.yaml"
    return path if path.is_file() else None


def missing_config(path: Path) -> BadInput:
    """The error for a ``--config`` that is neither a file nor a shipped recipe: it names the
    recipes of the method it starts with (or all methods that have some) and their folder."""
    method = path.parts[0] if len(path.parts) in (1, 2) and not path.suffix else None
    names = recipe_names(method) if method else []
    if names:
        known = f"the {method} recipes are {', '.join(names)}"
    else:
        methods = sorted({name.split("/")[0] for name in recipe_names()})
        known = f"e.g. moco/fashion-mnist; methods with recipes: {', '.join(methods)}"
    return BadInput(f"config file {path} not found: pass a YAML file or the name of a recipe "
                    f"shipped with sslkit ({known}; their files are in "
                    f"{recipes_dir()})")  # fmt: skip


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file; missing files and non-mappings are bad input."""
    path = Path(path)
    if not path.is_file():
        named = recipes_dir() / f"{path}.yaml" if not path.suffix else None
        if named is None or not named.is_file():
            raise missing_config(path)
        path = named
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise BadInput(f"config file {path} is not valid YAML: {exc}".splitlines()[0]) from exc
    if not isinstance(data, dict):
        raise BadInput(f"config file {path} must hold a mapping of sections")
    return data


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``base`` with ``override`` merged in, recursively for nested dicts."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def parse_set(assignments: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """``["train.lr=0.1", "method.queue_size=4096"]`` -> nested dict (values parsed as YAML)."""
    result: dict[str, Any] = {}
    for item in assignments:
        key, sep, raw = item.partition("=")
        if not sep or not key or "." not in key:
            raise BadInput(f"bad --set '{item}': write SECTION.KEY=VALUE, e.g. train.lr=0.1")
        value = parse_value(raw, item)
        node = result
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return result


_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def parse_value(raw: str, item: str = "") -> Any:
    """A ``--set`` value parsed as YAML, with ``1e-3``-style numbers read as floats.

    (YAML 1.1 reads an exponent without a dot as a string, which would make ``lr=1e-3``
    a string lr.)
    """
    if not raw:
        return None
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        problem = str(exc).splitlines()[0]
        raise BadInput(f"bad --set '{item or raw}': value is not valid YAML ({problem}); "
                       "quote strings, e.g. key='a: b'") from exc  # fmt: skip
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        return float(value)
    return value


def method_defaults(method_cls: type) -> dict[str, Any]:
    """The defaults a method declares, as a config dict."""
    return {
        "method": {"name": method_cls.name,
                   **dataclasses.asdict(method_cls.Config())},  # fmt: skip
        "train": copy.deepcopy({**TRAIN_DEFAULTS, **method_cls.default_train}),
        "augment": copy.deepcopy(method_cls.default_augment),
        "model": {"arch": None},
        "data": {"spec": "digits", "download": False, "image_size": None,
                 "skip_bad_images": False},
    }


def resolve(method_cls: type, *layers: dict[str, Any]) -> dict[str, Any]:
    """Merge the layers over the method's defaults, check every key is known and every
    value's type and range (:func:`sslkit.config_schema.validate`)."""
    from sslkit.config_schema import validate

    config = method_defaults(method_cls)
    for layer in layers:
        if not isinstance(layer, dict):
            raise BadInput("a config must be a mapping of sections (train:, method:, ...)")
        check_keys(config, layer)
        config = deep_merge(config, layer)
    return validate(config, method_cls)


def check_keys(reference: dict[str, Any], layer: dict[str, Any], prefix: str = "") -> None:
    """Unknown sections or keys are bad input (typos must not be silently ignored)."""
    for key, value in layer.items():
        where = f"{prefix}{key}"
        if key not in reference:
            known = ", ".join(sorted(reference))
            raise BadInput(f"unknown config key '{where}': known here are {known}")
        if isinstance(reference[key], dict):
            if not isinstance(value, dict):
                raise BadInput(f"config section '{where}' must be a mapping of keys to values "
                               f"(e.g. {where}: {{...}}), not {type(value).__name__}")
            check_keys(reference[key], value, where + ".")


def method_config(method_cls: type, section: dict[str, Any]):
    """Build the method's ``Config`` dataclass from the ``method`` section."""
    values = {k: v for k, v in section.items() if k != "name"}
    try:
        return method_cls.Config(**values)
    except TypeError as exc:
        raise BadInput(f"bad method config for {method_cls.name}: {exc}") from exc
