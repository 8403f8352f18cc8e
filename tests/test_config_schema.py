"""Typed validation of the resolved config: one place checks every value's type and range."""

from __future__ import annotations

import pytest

from sslkit import config as cfg
from sslkit.config_schema import Rule, check_value, method_rules
from sslkit.errors import BadInput
from sslkit.methods.registry import get_method
from tests.conftest import run_cli


@pytest.mark.parametrize("assignment, fragment", [
    ("train.lr=abc", "train.lr='abc': expected a number > 0"),
    ("train.epochs=abc", "train.epochs='abc': expected an integer >= 1"),
    ("train.batch_size=0", "train.batch_size=0: expected an integer >= 1"),
    ("method.queue_size=-5", "method.queue_size=-5: expected an integer >= 1"),
    ("train.lr=-1", "train.lr=-1: expected a number > 0"),
    ("train.lr=.nan", "train.lr=nan"),
    ("train.epochs=2.5", "train.epochs=2.5"),
    ("train.amp=3", "train.amp=3: expected true or false"),
    ("train.optimizer=adam", "expected one of sgd, lars"),
    ("method.temperature=0", "method.temperature=0: expected a number > 0"),
    ("augment.crop_scale=[0.2]", "augment.crop_scale=[0.2]: expected a list of 2 values"),
    ("augment.flip_prob=1.5", "expected a number >= 0 and <= 1"),
    ("data.image_size=0", "data.image_size=0"),
])  # fmt: skip
def test_bad_set_value_is_one_line_exit_2_and_nothing_written(tmp_path, assignment, fragment):
    """The cases a new user met: one line naming key, value and rule; no workdir at all."""
    workdir = tmp_path / "run"
    result = run_cli("pretrain", "--method", "moco", "--data", "digits@128", "--workdir",
                     workdir, "--no-progress", "--set", assignment, expect=2)  # fmt: skip
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and fragment in lines[0], result.output
    assert "Traceback" not in result.output
    assert not workdir.exists(), "nothing may be written for a bad value"


def test_values_come_back_in_their_canonical_type():
    """``epochs: 5.0`` (or ``1e3`` from --set) is an int; an int lr is a float."""
    config = cfg.resolve(get_method("moco"), {"train": {"epochs": 5.0, "lr": 1}})
    assert config["train"]["epochs"] == 5 and isinstance(config["train"]["epochs"], int)
    assert isinstance(config["train"]["lr"], float)


def test_a_section_that_is_no_mapping_is_refused():
    """``train: 5`` in a recipe is bad input, not an AttributeError."""
    with pytest.raises(BadInput, match="section 'train' must be a mapping"):
        cfg.resolve(get_method("moco"), {"train": 5})


def test_method_rules_come_from_the_config_fields():
    """Every Config field has a rule; numbers are >= 0 unless hp() declares more."""
    rules = method_rules(get_method("moco+cld"))
    assert rules["queue_size"].low == 1 and rules["temperature"].above == 0
    assert rules["cld_weight"] == Rule("float", low=0)  # an add-on's field, default bound
    assert rules["mlp"].kind == "bool"


def test_every_shipped_recipe_validates():
    """The recipes hold only values the rules accept (the rules are not too strict)."""
    for name in cfg.recipe_names():
        method = name.split("/")[0]
        cfg.resolve(get_method(method), cfg.load_yaml(name))


def test_rule_descriptions_name_the_fix():
    """The message says what a right value looks like."""
    with pytest.raises(BadInput, match=r"expected a list of 2 values, each a number > 0"):
        check_value("x.y", [1, -1], Rule("list", items=Rule("float", above=0), length=2))
    assert check_value("x.y", None, Rule("int", optional=True)) is None
    with pytest.raises(BadInput, match="expected true or false"):
        check_value("x.y", "yes please", Rule("bool"))
