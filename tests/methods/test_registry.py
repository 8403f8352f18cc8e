"""Entry-point discovery of methods, including a plugin that fails to import."""

from __future__ import annotations

import json
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
