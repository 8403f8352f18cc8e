"""The package's layers: every import between sslkit's parts points down, never up.

From the top: the command line (``sslkit.cli``, ``sslkit.commands``); the library (the
Python API ``sslkit.api``, ``engine``, ``eval``, ``features``, ``detection``, ``testing``);
the methods and the plugin surface (``methods``, ``plugin``); the building blocks
(``nn``, and ``clustering``, whose k-means HCSC and PCL train with); at the bottom the
models, the data, the distributed helpers, the configuration, errors and small utilities.
A module may import from its own layer or any layer below. Imports inside functions count
too (they are how sslkit stays quick to start), so the check reads every ``import`` of
every module, wherever it is.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "sslkit"

#: Top to bottom; every part of the package (first component under ``sslkit.``) is in one.
LAYERS: list[set[str]] = [
    {"cli", "commands", "__main__"},
    {"api", "engine", "eval", "features", "detection", "testing"},
    {"methods", "plugin"},
    {"nn", "clustering"},
    {"models", "data", "distributed", "config", "config_schema", "errors", "utils"},
]
#: The commands call the library: besides the command line itself they import only these.
COMMAND_IMPORTS = {"cli", "commands", "api", "errors", "utils"}


def layer_of(part: str) -> int:
    """The layer of a part of the package (0 = top)."""
    for depth, parts in enumerate(LAYERS):
        if part in parts:
            return depth
    raise AssertionError(f"sslkit.{part} is in no layer: add it to LAYERS in {__file__}")


def part_of(module: str) -> str | None:
    """``sslkit.eval.knn`` -> ``eval``; ``sslkit`` itself -> ``None``."""
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 and pieces[0] == "sslkit" else None


def imported_modules(source: str) -> list[tuple[int, str, list[str]]]:
    """``(line, module, names)`` of every absolute import of sslkit in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "sslkit" or node.module.startswith("sslkit."):
                found.append((node.lineno, node.module, [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "sslkit" or alias.name.startswith("sslkit."):
                    found.append((node.lineno, alias.name, []))
    return found


def violations(package: Path = PACKAGE) -> list[str]:
    """Every upward import (and every command import outside ``COMMAND_IMPORTS``)."""
    problems = []
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package.parent).with_suffix("")
        module = ".".join(relative.parts).removesuffix(".__init__")
        source_part = part_of(module)
        if source_part is None:
            continue  # sslkit/__init__.py: the facade, importing the API lazily
        where = layer_of(source_part)
        for line, target, names in imported_modules(path.read_text()):
            for target_module in [target] if target != "sslkit" else [f"sslkit.{n}" for n in names]:
                target_part = part_of(target_module)
                if target_part is None or target_part == "__version__":
                    continue
                if layer_of(target_part) < where:
                    problems.append(f"{path.relative_to(package.parent)}:{line}: sslkit."
                                    f"{source_part} imports {target_module} from a higher layer")
                if source_part == "commands" and target_part not in COMMAND_IMPORTS:
                    problems.append(f"{path.relative_to(package.parent)}:{line}: a command "
                                    f"imports {target_module}: call the library (sslkit.api)")
    return problems


def test_imports_point_down_only() -> None:
    """No module imports from a layer above its own."""
    problems = violations()
    assert not problems, "upward imports:\n" + "\n".join(problems)


def test_every_part_of_the_package_has_a_layer() -> None:
    """A new sub-package must be placed in a layer (so the check cannot miss it)."""
    parts = {p.name.removesuffix(".py") for p in PACKAGE.iterdir()
             if (p.is_dir() and (p / "__init__.py").exists()) or p.suffix == ".py"}  # fmt: skip
    for part in parts - {"__init__"}:
        layer_of(part)


@pytest.mark.parametrize(("where", "line", "kind"), [
    ("nn/bad.py", "from sslkit.engine.trainer import Trainer\n", "higher layer"),
    ("methods/bad.py", "def f():\n    import sslkit.eval.knn\n", "higher layer"),
    ("data/bad.py", "from sslkit import commands\n", "higher layer"),
    ("commands/bad.py", "from sslkit.eval.knn import knn_classify\n", "call the library"),
])  # fmt: skip
def test_the_check_catches_an_upward_import(tmp_path: Path, where: str, line: str,
                                            kind: str) -> None:  # fmt: skip
    """An upward import planted in a copy of the package is reported with its file."""
    import shutil

    copy = tmp_path / "sslkit"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / where).write_text(line)
    problems = violations(copy)
    assert len(problems) == 1 and where in problems[0] and kind in problems[0], problems
