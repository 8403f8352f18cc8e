"""Values users hand in stay literal in the files other programs run: ``sslkit detect``'s
command.sh (a shell) and config.yaml (detectron2, whose loader falls back to
``yaml.unsafe_load``), and sslkit's own YAML reading refuses Python-object tags."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess

import pytest
import yaml

from sslkit.errors import BadInput
from tests.conftest import run_cli
from tests.transfer_data import write_voc2007

HOSTILE = "$(touch pwned-subst) a; touch pwned-semi `touch pwned-tick` 'q\" & touch pwned-amp"
PYTHON_TAG = "!!python/object/apply:os.system ['touch pwned-yaml']"


def _pwned(root) -> list[str]:
    return sorted(str(p) for p in root.rglob("pwned*"))


def test_command_and_config_keep_hostile_values_literal(digits_run, tmp_path):
    """Paths and --opts values with $( ), ;, backquotes, quotes and newlines: running
    command.sh passes them as single literal arguments, and config.yaml read the way
    detectron2 may read it (yaml.unsafe_load) holds plain strings and no extra keys."""
    root = tmp_path / HOSTILE
    root.mkdir()
    voc = write_voc2007(root / "voc")
    checkpoint = root / "ck\nINJECTED: [1]\n.pt"
    shutil.copyfile(digits_run / "checkpoint.pt", checkpoint)
    workdir = root / "work; touch pwned-workdir"
    run_cli("detect", "--task", "voc", "--checkpoint", checkpoint, "--data-root", voc,
            "--num-gpus", "0", "--config", "voc0712-fpn-frozen", "--dry-run",
            "--workdir", workdir, "--opts", "OUTPUT_DIR", HOSTILE,
            "--opts", "SOLVER.CHECKPOINT_PERIOD", PYTHON_TAG)  # fmt: skip

    text = (workdir / "config.yaml").read_text()
    cfg = yaml.unsafe_load(text)  # detectron2's fallback loader: still no object is built
    assert cfg["OUTPUT_DIR"] == HOSTILE and cfg["SOLVER"]["CHECKPOINT_PERIOD"] == PYTHON_TAG
    assert "INJECTED" not in cfg, "the checkpoint's name added no YAML"
    assert "ck\\nINJECTED" in text  # the name's newline is written escaped, in a comment

    # command.sh names `python` (a dry run is for another machine): a stand-in records
    # the arguments it gets, one per NUL.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "python"
    fake.write_text('#!/bin/sh\nprintf "%s\\0" "$@" > "$ARGS_FILE"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    args_file = tmp_path / "args"
    done = subprocess.run(["sh", str(workdir / "command.sh")], cwd=tmp_path,
                          env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
                               "ARGS_FILE": str(args_file)},
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    args = args_file.read_bytes().decode().split("\0")[:-1]
    assert args[args.index("--config-file") + 1] == str((workdir / "config.yaml").resolve())
    assert args[args.index("--data-root") + 1] == str(voc.resolve())
    assert _pwned(tmp_path) == [], "nothing in a value ran"


def test_sslkit_yaml_refuses_python_object_tags(tmp_path):
    """Recipes and detectron2 configs are read with yaml.safe_load: a Python tag is bad
    input and builds nothing."""
    from sslkit.config import load_yaml
    from sslkit.detection.configs import load_config

    recipe = tmp_path / "evil.yaml"
    recipe.write_text(f"train:\n  lr: {PYTHON_TAG}\n")
    with pytest.raises(BadInput, match="not valid YAML"):
        load_yaml(recipe)
    with pytest.raises(BadInput, match="cannot read detectron2 config"):
        load_config(recipe)
    result = run_cli("pretrain", "--method", "moco", "--config", recipe, "--workdir",
                     tmp_path / "run", expect=2)  # fmt: skip
    assert "not valid YAML" in result.output and not (tmp_path / "run").exists()
    assert _pwned(tmp_path) == [] and not os.path.exists("pwned-yaml")


def test_set_values_are_data_not_code(tmp_path):
    """--set parses YAML safely: a Python tag is bad input, never an object."""
    result = run_cli("pretrain", "--method", "moco", "--workdir", tmp_path / "run", "--set",
                     f"train.lr={PYTHON_TAG}", expect=2)  # fmt: skip
    assert "not valid YAML" in result.output and _pwned(tmp_path) == []
