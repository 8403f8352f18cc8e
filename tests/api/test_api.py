"""The Python API: one function per command, named arguments like the options, results whose
``to_dict()`` is the command's ``--json``, and an ``import sslkit`` that loads nothing heavy."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys

import pytest

import sslkit
from sslkit.cli import SUBCOMMANDS, cli
from tests.conftest import run_cli

COMMANDS = ["pretrain", "extract", "knn", "cluster", "linear", "semisup", "transfer", "detect"]
#: options that are the command line's business, not the library's
CLI_ONLY = {"json", "debug", "help"}
#: option spellings whose argument has another name in Python
RENAMED = {"set": "overrides"}


def _option_names(command) -> set[str]:
    """The Python names of a click command's options: ``--batch-size`` -> ``batch_size``."""
    names = set()
    for param in command.params:
        flags = [flag for flag in param.opts if flag.startswith("--")]
        if not flags or getattr(param, "hidden", False):
            continue
        name = flags[0][2:].replace("-", "_")
        if name not in CLI_ONLY:
            names.add(RENAMED.get(name, name))
    return names


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_a_function_with_the_same_arguments(name: str) -> None:
    """``sslkit.<command>`` takes exactly the command's options, named alike."""
    command = cli.get_command(None, name)
    function = getattr(sslkit, name)
    assert function.__module__ == f"sslkit.api.{name}"
    assert set(inspect.signature(function).parameters) == _option_names(command)
    assert function.__doc__ and "Example::" in function.__doc__


def test_import_sslkit_and_help_load_no_torch() -> None:
    """``import sslkit`` and ``sslkit --help`` import neither torch nor the commands."""
    code = ("import sys, sslkit\n"
            "from click.testing import CliRunner\n"
            "from sslkit.cli import cli\n"
            "assert CliRunner().invoke(cli, ['--help']).exit_code == 0\n"
            "names = ('torch', 'numpy', 'h5py', 'sslkit.api.knn')\n"
            "heavy = [m for m in names if m in sys.modules]\n"
            "print(heavy)\n")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    assert set(COMMANDS) <= set(SUBCOMMANDS)


def test_an_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'train'"):
        sslkit.train  # noqa: B018 - the attribute access is the test


def _without_timing(data: dict) -> dict:
    return {key: value for key, value in data.items() if key not in ("seconds",)}


def test_knn_and_cluster_results_are_the_commands_json(digits_run, tmp_path) -> None:
    """``to_dict()`` of the API's result equals what the command writes with ``--json``."""
    ckpt = digits_run / "checkpoint.pt"
    for split in ("train", "test"):
        extracted = sslkit.extract(ckpt, "digits", tmp_path / f"{split}.h5", split=split)
        assert extracted.out == str(tmp_path / f"{split}.h5") and extracted["rows"] > 400
    train, test = tmp_path / "train.h5", tmp_path / "test.h5"

    result = sslkit.knn(train_features=train, test_features=test, k=[5, 50])
    run_cli("knn", "--train-features", train, "--test-features", test, "--k", "5,50",
            "--json", tmp_path / "k.json")  # fmt: skip
    assert _without_timing(result.to_dict()) == _without_timing(
        json.loads((tmp_path / "k.json").read_text()))
    assert set(result.top1) == {5, 50} and result.best["top1"] == max(result.top1.values())
    assert "best top-1" in repr(result)

    clustered = sslkit.cluster(train, [10, 5], tmp_path / "a.h5", hierarchical=True)
    run_cli("cluster", "--features", train, "--clusters", "10,5", "--hierarchical", "--out",
            tmp_path / "b.h5", "--json", tmp_path / "c.json")  # fmt: skip
    command = json.loads((tmp_path / "c.json").read_text())
    ours = clustered.to_dict()
    for data in (ours, command):
        data.pop("out"), data.pop("clustering_seconds"), data.pop("seconds")
    assert ours == command and [row["k"] for row in clustered.levels] == [10, 5]


def test_linear_on_feature_files_matches_the_command(digits_run, tmp_path) -> None:
    """The cached-feature probe through Python and through the command: the same numbers."""
    ckpt = digits_run / "checkpoint.pt"
    for split in ("train", "test"):
        run_cli("extract", "--checkpoint", ckpt, "--data", "digits@200", "--split", split,
                "--out", tmp_path / f"{split}.h5")  # fmt: skip
    args = {"train_features": tmp_path / "train.h5", "test_features": tmp_path / "test.h5",
            "recipe": "adco", "lr": 1.0, "epochs": 3}  # fmt: skip
    result = sslkit.linear(**args)
    run_cli("linear", "--train-features", args["train_features"], "--test-features",
            args["test_features"], "--recipe", "adco", "--lr", "1", "--epochs", "3",
            "--json", tmp_path / "l.json")  # fmt: skip
    default = sslkit.linear(train_features=args["train_features"],
                            test_features=args["test_features"])  # fmt: skip
    assert default["protocol"] == "lbfgs-logistic" and default.top1 > 50
    assert _without_timing(result.to_dict()) == _without_timing(
        json.loads((tmp_path / "l.json").read_text()))
    assert 0 <= result.top1 <= 100 and result.top1 == result["result"]["top1"]


def test_to_dict_is_a_copy(digits_run, tmp_path) -> None:
    """Changing what ``to_dict()`` returned leaves the result as it was."""
    from sslkit.api.results import Result

    result = Result({"a": {"b": 1}})
    result.to_dict()["a"]["b"] = 2
    assert result["a"] == {"b": 1} and dict(result) == {"a": {"b": 1}}
