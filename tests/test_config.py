"""Configuration: defaults < recipe < flags < --set, --set parsing, unknown keys."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import pytest

from sslkit.config import (
    TRAIN_DEFAULTS,
    deep_merge,
    find_recipe,
    load_yaml,
    method_config,
    method_defaults,
    parse_set,
    recipe_names,
    recipes_dir,
    resolve,
)
from sslkit.errors import BadInput
from sslkit.methods.base import Method, hp
from sslkit.methods.moco import MoCo


class Toy(Method):
    """A method whose own train defaults differ from TRAIN_DEFAULTS."""

    name = "toy"
    default_train = {"epochs": 3, "optimizer": "lars"}

    @dataclass
    class Config:
        width: int = hp(4, "width")
        scales: list = hp([1, 2], "scales")


RECIPE = {"method": {"queue_size": 1024, "temperature": 0.1},
          "train": {"lr": 0.1, "epochs": 5, "batch_size": 64},
          "augment": {"crop_scale": [0.3, 1.0], "flip_prob": 0.1}}  # fmt: skip
FLAGS = {"method": {"name": "moco"}, "train": {"lr": 0.2, "epochs": 7},
         "model": {"arch": "resnet18"}}  # fmt: skip
SET_LAYER = {"train": {"lr": 0.3}, "augment": {"flip_prob": 0.0}}


def test_precedence_defaults_recipe_flags_set():
    """Each key is taken from the highest layer that sets it."""
    config = resolve(MoCo, RECIPE, FLAGS, SET_LAYER)
    assert config["train"]["lr"] == 0.3  # --set beats flags, recipe and defaults
    assert config["train"]["epochs"] == 7  # flags beat recipe
    assert config["train"]["batch_size"] == 64  # recipe beats defaults
    assert config["train"]["momentum"] == 0.9  # default
    assert config["method"]["queue_size"] == 1024 and config["method"]["temperature"] == 0.1
    assert config["method"]["momentum"] == 0.999 and config["method"]["name"] == "moco"
    assert config["augment"]["flip_prob"] == 0.0
    assert config["augment"]["crop_scale"] == [0.3, 1.0]
    assert config["augment"]["jitter"] == [0.4, 0.4, 0.4, 0.1]  # untouched sibling
    assert config["model"]["arch"] == "resnet18"
    assert config["data"]["spec"] == "digits"


def test_set_beats_flags_even_when_given_first():
    """The order of resolve's layers, not of the keys, decides the winner."""
    assert resolve(MoCo, {"train": {"lr": 1.0}}, {"train": {"lr": 2.0}})["train"]["lr"] == 2.0
    assert resolve(MoCo, {"train": {"lr": 2.0}}, {"train": {"lr": 1.0}})["train"]["lr"] == 1.0


def test_method_train_defaults_override_global_defaults():
    """A method's default_train beats TRAIN_DEFAULTS and loses to the recipe."""
    defaults = method_defaults(Toy)
    assert defaults["train"]["epochs"] == 3 and defaults["train"]["optimizer"] == "lars"
    assert defaults["train"]["lr"] == TRAIN_DEFAULTS["lr"]
    assert defaults["method"] == {"name": "toy", "width": 4, "scales": [1, 2]}
    assert resolve(Toy, {"train": {"epochs": 9}})["train"]["epochs"] == 9


def test_lists_are_replaced_not_merged():
    """A list value replaces the default list as a whole."""
    config = resolve(MoCo, {"train": {"milestones": [5]}})
    assert config["train"]["milestones"] == [5]


def test_resolve_does_not_share_state_with_layers():
    """Mutating the resolved config changes neither the layers nor the method's defaults."""
    recipe = {"augment": {"crop_scale": [0.3, 1.0]}}
    config = resolve(MoCo, recipe)
    config["augment"]["crop_scale"].append(9)
    config["augment"]["jitter"].append(9)
    config["train"]["milestones"].append(9)
    assert recipe["augment"]["crop_scale"] == [0.3, 1.0]
    assert MoCo.default_augment["jitter"] == [0.4, 0.4, 0.4, 0.1]
    assert TRAIN_DEFAULTS["milestones"] == [120, 160]


def test_method_defaults_do_not_share_train_lists():
    """method_defaults (and resolve with no layer) returns its own milestones list."""
    resolve(MoCo)["train"]["milestones"].append(9)
    try:
        assert TRAIN_DEFAULTS["milestones"] == [120, 160]
    finally:
        TRAIN_DEFAULTS["milestones"][:] = [120, 160]


def test_deep_merge_is_recursive_and_pure():
    """Nested dicts merge key by key; the inputs are not modified."""
    base = {"a": {"x": 1, "y": [1]}, "b": 2}
    override = {"a": {"y": [2], "z": 3}}
    assert deep_merge(base, override) == {"a": {"x": 1, "y": [2], "z": 3}, "b": 2}
    assert base == {"a": {"x": 1, "y": [1]}, "b": 2}


def test_parse_set_types():
    """Values are parsed as YAML: int, float, list, bool, string, null."""
    parsed = parse_set([
        "method.queue_size=4096", "train.lr=0.1", "augment.crop_scale=[0.3, 1.0]",
        "method.symmetric=true", "method.mlp=False", "model.arch=resnet18-small",
        "train.weight_decay=5.0e-4", "augment.size=",
    ])  # fmt: skip
    assert parsed == {
        "method": {"queue_size": 4096, "symmetric": True, "mlp": False},
        "train": {"lr": 0.1, "weight_decay": 5e-4},
        "augment": {"crop_scale": [0.3, 1.0], "size": None},
        "model": {"arch": "resnet18-small"},
    }
    assert type(parsed["method"]["queue_size"]) is int
    assert type(parsed["train"]["lr"]) is float


def test_parse_set_later_assignment_wins_and_value_may_hold_equals():
    """Repeating a key keeps the last value; only the first '=' separates key and value."""
    assert parse_set(["train.lr=0.1", "train.lr=0.2"]) == {"train": {"lr": 0.2}}
    assert parse_set(["data.spec=imagefolder:/a=b"]) == {"data": {"spec": "imagefolder:/a=b"}}


@pytest.mark.parametrize("item", ["train.lr", "lr=0.1", "=0.1", "", "train"])
def test_parse_set_bad_syntax_is_bad_input(item):
    """Assignments without '=', without a section or without a key are bad input."""
    with pytest.raises(BadInput, match="SECTION.KEY=VALUE"):
        parse_set([item])


def test_parse_set_bad_yaml_value_is_bad_input():
    """A value that is not valid YAML is bad input, not a YAML traceback."""
    with pytest.raises(BadInput):
        parse_set(["train.milestones=[10, 20"])


def test_parse_set_exponent_without_dot_is_float():
    """--set train.lr=1e-3 gives a float learning rate."""
    assert parse_set(["train.lr=1e-3"]) == {"train": {"lr": 0.001}}


@pytest.mark.parametrize(
    ("layer", "where"),
    [({"trian": {"lr": 0.1}}, "trian"), ({"train": {"lrr": 0.1}}, "train.lrr"),
     ({"method": {"queue_sise": 8}}, "method.queue_sise"), ({"model": {"arch": None, "x": 1}},
                                                             "model.x")],
)  # fmt: skip
def test_unknown_keys_are_bad_input(layer, where):
    """A typo in a section or key is bad input naming the full key."""
    with pytest.raises(BadInput, match=f"unknown config key '{where}'"):
        resolve(MoCo, layer)


def test_unknown_key_in_a_later_layer_is_bad_input():
    """Keys are checked in every layer, --set included."""
    with pytest.raises(BadInput, match="train.epoch'"):
        resolve(MoCo, RECIPE, FLAGS, parse_set(["train.epoch=3"]))


def test_method_config_builds_dataclass():
    """The method section becomes the method's Config ('name' dropped)."""
    config = method_config(MoCo, resolve(MoCo, RECIPE)["method"])
    assert isinstance(config, MoCo.Config)
    assert config.queue_size == 1024 and config.temperature == 0.1 and config.dim == 128
    with pytest.raises(BadInput, match="bad method config"):
        method_config(MoCo, {"name": "moco", "not_a_field": 1})


def test_load_yaml_errors_are_bad_input(tmp_path):
    """Missing files, invalid YAML and non-mappings are bad input."""
    with pytest.raises(BadInput, match="not found"):
        load_yaml(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("train: [1, 2\n")
    with pytest.raises(BadInput, match="not valid YAML"):
        load_yaml(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(BadInput, match="mapping"):
        load_yaml(tmp_path / "list.yaml")
    (tmp_path / "empty.yaml").write_text("")
    assert load_yaml(tmp_path / "empty.yaml") == {}


def test_shipped_recipe_by_name_resolves():
    """'moco/digits' names the shipped recipe, and it only uses known keys."""
    recipe = load_yaml("moco/digits")
    assert find_recipe("moco", "digits") is not None and find_recipe("moco", "nope") is None
    config = resolve(MoCo, recipe)
    assert config["method"]["queue_size"] == recipe["method"]["queue_size"]


def test_recipes_are_package_resources():
    """The recipes are the package sslkit.configs (importlib.resources), detectron2's too."""
    assert recipes_dir() == resources.files("sslkit.configs")
    assert (recipes_dir() / "hcsc" / "digits.yaml").is_file()
    assert (recipes_dir() / "detectron2" / "voc0712_R50-C4_24k.yaml").is_file()
    assert {"moco/digits", "hcsc/imagenet-200ep"} <= set(recipe_names())
    assert not any(name.startswith("detectron2/") for name in recipe_names())


def test_unknown_recipe_names_the_method_recipes():
    """A recipe name that is not shipped: the method's recipes and their folder are named."""
    with pytest.raises(BadInput) as error:
        load_yaml("hcsc/imagenet-20")
    message = str(error.value)
    assert "hcsc/imagenet-200ep" in message and "hcsc/digits" in message
    assert "moco/" not in message and str(recipes_dir()) in message
    with pytest.raises(BadInput, match=r"methods with recipes: .*hcsc.*moco"):
        load_yaml("nomethod/digits")
