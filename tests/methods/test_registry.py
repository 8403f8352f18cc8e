"""Entry-point discovery of methods, including a plugin that fails to import."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from sslkit.cli import cli
from sslkit.errors import BadInput
from sslkit.methods import registry
from sslkit.methods.moco import MoCo


@pytest.fixture
def broken_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake installed distribution whose ``sslkit.methods`` entry point cannot be imported."""
    dist_info = tmp_path / "broken_plugin-0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n"
    )
    (dist_info / "entry_points.txt").write_text(
        "[sslkit.methods]\nbroken = broken_plugin:Missing\n"
    )
    (tmp_path / "broken_plugin.py").write_text(
        'raise ImportError("broken_plugin needs a package that is not installed")\n'
    )
    monkeypatch.syspath_prepend(str(tmp_path))  # added at runtime, after sslkit was imported
    return tmp_path


def test_builtin_moco_is_discovered() -> None:
    """MoCo is registered in sslkit's own pyproject.toml like any plugin."""
    found = registry.discover()
    assert found["moco"].method_class is MoCo
    assert found["moco"].package == "sslkit" and found["moco"].error is None
    assert registry.get_method("moco") is MoCo


def test_unknown_method_is_bad_input() -> None:
    """An unregistered name is the user's mistake, and the message lists the known ones."""
    with pytest.raises(BadInput, match="unknown method 'nope'.*moco"):
        registry.get_method("nope")


def test_broken_plugin_is_listed_with_its_error(broken_plugin: Path) -> None:
    """A plugin that fails to import is listed with its error and breaks nothing else."""
    found = registry.discover()
    assert "broken" in found, "a dist-info added to sys.path at runtime must be discovered"
    broken = found["broken"]
    assert broken.method_class is None
    assert broken.package == "broken-plugin" and broken.target == "broken_plugin:Missing"
    assert broken.error is not None and "ImportError" in broken.error
    assert "not installed" in broken.description
    assert found["moco"].method_class is MoCo and found["moco"].error is None
    assert registry.get_method("moco") is MoCo
    with pytest.raises(BadInput, match="'broken'.*failed to load"):
        registry.get_method("broken")


def test_cli_lists_broken_plugin(broken_plugin: Path) -> None:
    """``sslkit methods --json -`` exits 0 and reports the broken plugin beside moco."""
    result = CliRunner().invoke(cli, ["methods", "--json", "-"])
    assert result.exit_code == 0, result.output
    start = result.stdout.index("{")  # the rich table goes to stderr; JSON to stdout
    methods = {m["name"]: m for m in json.loads(result.stdout[start:])["methods"]}
    assert methods["moco"]["loaded"] is True
    assert methods["broken"]["loaded"] is False
    assert "ImportError" in methods["broken"]["error"]


def test_cli_pretrain_with_broken_plugin_is_bad_input(broken_plugin: Path) -> None:
    """Asking to train the broken method exits with code 2 and one line of error."""
    result = CliRunner().invoke(cli, ["pretrain", "--method", "broken"])
    assert result.exit_code == 2
    assert "failed to load" in result.stderr


def _distribution(folder: Path, package: str, module: str, entries: str) -> None:
    """A fake installed distribution ``package`` whose entry points are ``entries``."""
    dist_info = folder / f"{package.replace('-', '_')}-0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 0.1\n")
    (dist_info / "entry_points.txt").write_text(f"[sslkit.methods]\n{entries}\n")


@pytest.fixture
def two_packages_one_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``pkg-a`` and ``pkg-b`` both register ``dup`` (MoCo under two names)."""
    for package, module in (("pkg-a", "dup_a"), ("pkg-b", "dup_b")):
        _distribution(tmp_path, package, module, f"dup = {module}:Dup")
        (tmp_path / f"{module}.py").write_text(
            "from sslkit.methods.moco import MoCo\n\n\n"
            f"class Dup(MoCo):\n    name = 'dup'\n    description = 'from {module}'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for module in ("dup_a", "dup_b"):
        sys.modules.pop(module, None)


def test_two_packages_registering_one_name_are_both_listed(two_packages_one_name) -> None:
    found = registry.discover()
    assert found["dup"].package == "pkg-a" and found["dup"].also_registered_by == ("pkg-b",)
    assert found["pkg-b:dup"].package == "pkg-b"
    assert found["pkg-b:dup"].method_class.description == "from dup_b"


def test_an_ambiguous_name_is_refused_naming_both_and_the_fix(two_packages_one_name) -> None:
    with pytest.raises(BadInput) as refused:
        registry.get_method("dup")
    message = str(refused.value)
    assert "pkg-a (dup_a:Dup)" in message and "pkg-b (dup_b:Dup)" in message
    assert "pkg-a:dup or pkg-b:dup" in message
    assert registry.get_method("pkg-b:dup").description == "from dup_b"


def test_cli_refuses_an_ambiguous_method_and_lists_both(two_packages_one_name) -> None:
    result = CliRunner().invoke(cli, ["pretrain", "--method", "dup"])
    assert result.exit_code == 2 and "pkg-a:dup or pkg-b:dup" in result.stderr
    listed = CliRunner().invoke(cli, ["methods", "--json", "-"])
    methods = {m["name"] + m["package"]: m for m in json.loads(
        listed.stdout[listed.stdout.index("{"):])["methods"]}  # fmt: skip
    assert methods["duppkg-a"]["also_registered_by"] == ["pkg-b"]
    table = re.sub(r"[\s│]+", " ", listed.stderr)  # the table's wrapped cells, in one line
    assert "also registered by pkg-b" in table


def test_only_the_named_entry_point_is_imported(tmp_path: Path, monkeypatch) -> None:
    """A slow or broken unrelated plugin is never imported when another method is asked for."""
    _distribution(tmp_path, "heavy-plugin", "heavy_plugin", "heavy = heavy_plugin:Heavy")
    (tmp_path / "heavy_plugin.py").write_text("raise SystemExit('imported heavy_plugin')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "heavy" in registry.registrations()  # listed from the metadata alone
    assert registry.get_method("moco") is MoCo
    assert "heavy_plugin" not in sys.modules
