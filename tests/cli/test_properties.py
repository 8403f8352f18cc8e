"""Bad input at random (Hypothesis): what users type and the files they hand in.

Properties, each over generated cases: a ``--set`` value or a YAML recipe either resolves
or is :class:`BadInput` with a one-line message, never another exception; through the
CLI, a bad value, feature file, subset file or image folder ends with exit 2 and one
line (never a traceback, never exit 1) and leaves no output behind. The example counts
keep the module to about two minutes on one core; the ``ci`` profile (the default, see
``tests/conftest.py``) is derandomised so CI sees the same cases every run, and
``HYPOTHESIS_PROFILE=explore`` draws new ones, ten times as many.
"""

from __future__ import annotations

import json
import os
import string
from pathlib import Path

import h5py
import numpy as np
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from sslkit import config as cfg
from sslkit.errors import BadInput
from sslkit.features.store import FeatureSet, write_features
from sslkit.methods.registry import get_method
from tests.conftest import run_cli

MOCO = get_method("moco")
HCSC = get_method("hcsc")
KEYS = sorted(f"{section}.{key}" for section, values in cfg.method_defaults(HCSC).items()
              for key in values if section != "method" or key != "name")  # fmt: skip
SCALE = 10 if os.environ.get("HYPOTHESIS_PROFILE") == "explore" else 1


def examples(count: int) -> settings:
    """``count`` generated cases (x10 under the explore profile), no per-case deadline."""
    return settings(max_examples=count * SCALE, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])  # fmt: skip


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**20), 10**20), st.floats(),
    st.text(max_size=12), st.sampled_from(["abc", "1e3", "-1", "0", ".nan", "[1, 2]", "{a: 1}",
                                           "true", "~", "0x10", "1_000", "'5'", "- 1"]),
)  # fmt: skip
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=6)  # fmt: skip


def _as_set_value(value) -> str:
    """How a user might type ``value`` after ``--set key=``."""
    if isinstance(value, str):
        return value
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def _single_line(message: str) -> None:
    assert message and "\n" not in message.strip(), message


def _exit_2_one_line(result) -> str:
    assert "Traceback" not in result.output, result.output
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


# -- what users type ----------------------------------------------------------------------
@examples(600)
@given(key=st.one_of(st.sampled_from(KEYS), st.text(max_size=15)), value=values)
def test_any_set_value_resolves_or_is_one_line_bad_input(key, value):
    """``--set KEY=VALUE`` for any key and value: a config, or BadInput in one line."""
    try:
        layer = cfg.parse_set([f"{key}={_as_set_value(value)}"])
        cfg.resolve(HCSC, layer)
    except BadInput as exc:
        _single_line(str(exc))


@examples(400)
@given(recipe=st.one_of(values, st.dictionaries(st.sampled_from(
    ["train", "method", "data", "model", "augment", "other"]),
    st.dictionaries(st.sampled_from([k.split(".")[1] for k in KEYS] + ["typo"]), values,
                    max_size=4), max_size=4)))  # fmt: skip
def test_any_yaml_recipe_resolves_or_is_one_line_bad_input(tmp_path, recipe):
    """A recipe file of any YAML structure (sections of random keys and values included)."""
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    try:
        cfg.resolve(HCSC, cfg.load_yaml(path))
    except BadInput as exc:
        _single_line(str(exc))


@examples(300)
@given(text=st.text(max_size=80) | st.binary(max_size=80).map(lambda b: b.decode("latin-1")))
def test_any_recipe_text_is_read_or_one_line_bad_input(tmp_path, text):
    """Recipe files of arbitrary characters (YAML errors, tabs, binary)."""
    path = tmp_path / "recipe.yaml"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    try:
        cfg.resolve(MOCO, cfg.load_yaml(path))
    except BadInput as exc:
        _single_line(str(exc))


NUMERIC_TRAIN = ["epochs", "lr", "log_every", "num_workers", "checkpoint_every",
                 "checkpoint_every_steps", "checkpoint_every_minutes", "weight_decay",
                 "momentum", "warmup_epochs", "knn_monitor_k", "gamma", "seed"]  # fmt: skip
not_a_number = st.text(alphabet=string.ascii_letters + " ,;:[]{}()$'\"", min_size=1,
                       max_size=10).filter(lambda t: yaml.safe_load(t) is not None
                                           if _yaml_ok(t) else True)  # fmt: skip


def _yaml_ok(text: str) -> bool:
    try:
        yaml.safe_load(text)
    except yaml.YAMLError:
        return False
    return True


@examples(80)
@given(key=st.sampled_from(NUMERIC_TRAIN + ["method.queue_size", "method.temperature",
                                            "method.dim", "augment.flip_prob"]),
       value=st.one_of(not_a_number, st.integers(-(10**6), -1).map(str),
                       st.sampled_from(["-0.5", ".inf", "-.inf", ".nan", "[]", "{}"])))  # fmt: skip
def test_cli_refuses_bad_values_in_one_line_writing_nothing(tmp_path_factory, key, value):
    """Wrong types, negatives and non-finite numbers for numeric keys: exit 2, no workdir."""
    key = key if "." in key else f"train.{key}"
    workdir = tmp_path_factory.mktemp("set") / "run"
    result = run_cli("pretrain", "--method", "moco", "--data", "digits@64", "--workdir",
                     workdir, "--no-progress", "--set", f"{key}={value}", expect=None)  # fmt: skip
    line = _exit_2_one_line(result)
    assert key in line or "--set" in line
    assert not workdir.exists()


# -- feature files ------------------------------------------------------------------------
def _valid_features(path: Path, rows: int, dim: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    write_features(path, FeatureSet(rng.normal(size=(rows, dim)).astype(np.float32),
                                    rng.integers(0, 3, rows), np.arange(rows),
                                    {"method": "moco", "arch": "resnet18"}))  # fmt: skip


feature_damage = st.sampled_from(["nan", "inf", "empty", "one_dim", "three_dim", "int_dtype",
                                  "string_labels", "short_labels", "truncated", "no_labels",
                                  "float_labels", "zero_dim", "garbage", "all_unlabelled"])


def _damage(path: Path, how: str, rows: int, dim: int, cut: float) -> None:
    if how == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * cut)])
        return
    if how == "garbage":
        path.write_bytes(np.random.default_rng(rows).bytes(max(1, int(2048 * cut))))
        return
    with h5py.File(path, "r+") as handle:
        features = handle["features"][()]
        replace = {"nan": ("features", np.where(np.arange(dim) == 0, np.nan, features)),
                   "inf": ("features", np.full_like(features, np.inf)),
                   "empty": ("features", np.zeros((0, dim), np.float32)),
                   "one_dim": ("features", features[:, 0]),
                   "three_dim": ("features", features[:, :, None]),
                   "int_dtype": ("features", features.astype(np.int64)),
                   "zero_dim": ("features", np.zeros((rows, 0), np.float32)),
                   "string_labels": ("labels", np.array([b"cat"] * rows)),
                   "float_labels": ("labels", np.full(rows, 0.5)),
                   "short_labels": ("labels", np.zeros(max(rows - 1, 0), np.int64)),
                   "all_unlabelled": ("labels", np.full(rows, -1, np.int64)),
                   "no_labels": ("labels", None)}[how]  # fmt: skip
        name, data = replace
        del handle[name]
        if data is not None:
            handle.create_dataset(name, data=data)


@examples(200)
@given(how=feature_damage, which=st.sampled_from(["train", "test", "both"]),
       rows=st.integers(1, 40), dim=st.integers(1, 8), cut=st.floats(0.0, 0.99),
       command=st.sampled_from(["knn", "linear"]))  # fmt: skip
def test_damaged_feature_files_are_one_line_exit_2(tmp_path_factory, how, which, rows, dim, cut,
                                                   command):  # fmt: skip
    folder = tmp_path_factory.mktemp("features")
    train, test = folder / "train.h5", folder / "test.h5"
    _valid_features(train, 40, dim, 0)
    _valid_features(test, rows, dim, 1)
    for path in ([train, test] if which == "both" else [train if which == "train" else test]):
        _damage(path, how, 40 if path == train else rows, dim, cut)
    out = folder / "out.json"
    extra = ["--k", "5"] if command == "knn" else ["--costs", "1"]
    result = run_cli(command, "--train-features", train, "--test-features", test, *extra,
                     "--json", out, "--no-progress", expect=None)  # fmt: skip
    assert "Traceback" not in result.output and result.exit_code != 1, result.output
    if result.exit_code != 0:
        _exit_2_one_line(result)
        assert not out.exists()
        assert not [p for p in folder.iterdir() if p.name.startswith(".sslkit-tmp-")]
    else:
        assert json.loads(out.read_text())


# -- subset files and image folders -------------------------------------------------------
def _image_folder(root: Path, per_class: int = 3) -> Path:
    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(
                root / cls / f"{i}.png")
    return root


@examples(40)
@given(content=st.one_of(st.lists(st.text(alphabet=string.printable.strip() + " ",
                                          max_size=12), max_size=5).map("\n".join),
                         st.binary(max_size=60).map(lambda b: b.decode("latin-1"))))
def test_subset_files_naming_no_known_image_are_one_line_exit_2(tmp_path_factory, digits_run,
                                                                content):  # fmt: skip
    """A semisup subset file of random lines (or bytes): exit 2 naming the problem."""
    assume(not any(line.strip() in {"0.png", "1.png", "2.png", "cat", "dog", "cat/0.png"}
                   for line in content.splitlines()))
    folder = tmp_path_factory.mktemp("subset")
    root = _image_folder(folder / "images" / "train")
    _image_folder(folder / "images" / "test", per_class=1)
    listing = folder / "subset.txt"
    listing.write_bytes(content.encode("utf-8", "surrogateescape"))
    result = run_cli("semisup", "--checkpoint", digits_run / "checkpoint.pt", "--data",
                     f"imagefolder:{root.parent}", "--subset-file", listing, "--epochs", "1",
                     "--workdir", folder / "semisup", "--no-progress", expect=None)  # fmt: skip
    _exit_2_one_line(result)
    assert not (folder / "semisup" / "semisup.json").exists()


image_damage = st.sampled_from(["zero_bytes", "random_bytes", "truncated", "text", "empty_class",
                                "no_classes", "nested_only", "hidden_only"])


@examples(80)
@given(damages=st.lists(image_damage, min_size=1, max_size=3), cut=st.floats(0.05, 0.95))
def test_damaged_image_folders_extract_or_stop_in_one_line(tmp_path_factory, digits_run,
                                                          damages, cut):  # fmt: skip
    """An image folder with bad files or odd structure: features of every image, or exit 2
    in one line and no output file (never an internal error)."""
    folder = tmp_path_factory.mktemp("images")
    root = _image_folder(folder / "data" / "train")
    good = (root / "cat" / "0.png").read_bytes()
    rng = np.random.default_rng(len(damages))

    def put(relative: str, data: bytes) -> None:
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(data)

    for index, damage in enumerate(damages):
        if damage == "zero_bytes":
            put(f"dog/z{index}.png", b"")
        elif damage == "random_bytes":
            put(f"cat/r{index}.jpg", rng.bytes(64))
        elif damage == "truncated":
            put(f"dog/t{index}.png", good[: int(len(good) * cut)])
        elif damage == "text":
            put(f"cat/x{index}.png", b"not an image")
        elif damage == "empty_class":
            (root / f"empty{index}").mkdir(exist_ok=True)
        elif damage == "no_classes":
            for path in sorted(root.rglob("*"), reverse=True):
                path.unlink() if path.is_file() else path.rmdir()
        elif damage == "nested_only":
            put("bird/deeper/0.png", good)
        elif damage == "hidden_only":
            put("fish/.hidden.png", good)
    out = folder / "features.h5"
    result = run_cli("extract", "--checkpoint", digits_run / "checkpoint.pt", "--data",
                     f"imagefolder:{root.parent}", "--split", "train", "--out", out,
                     "--no-progress", expect=None)  # fmt: skip
    assert "Traceback" not in result.output and result.exit_code in (0, 2), result.output
    if result.exit_code == 2:
        _exit_2_one_line(result)
        assert not out.exists()
    else:
        assert out.is_file()
    assert not [p for p in folder.iterdir() if p.name.startswith(".sslkit-tmp-")]
