"""The documentation stands alone: a short README, a page for every command and method, and
no file that sends readers to specification files they do not have.

``mkdocs build --strict`` (in ``.ci/run``) checks links, anchors and the generated parts;
these tests check what a build cannot see.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from sslkit.cli import SUBCOMMANDS

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
#: citations of material outside the project: the method specifications and papers the
#: code was written from (a file name with a section sign), or a path of one machine
#: (written in pieces so that this file does not match itself)
OUTSIDE = re.compile("|".join([r"\w\.md ?§", r"shared/(?:methods|papers)", "/wo" + "rk/",
                               "seed" + " spec", "provided" + " sources"]))
#: recipes whose header comments still cite the specifications; a recipe leaves this set
#: when its comment is rewritten (the test below fails until it does)
def _project_files() -> list[str]:
    """The repository's text files (tracked or new, not ignored)."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, capture_output=True, text=True, check=True)  # fmt: skip
    suffixes = {".md", ".py", ".yaml", ".yml", ".toml", ".sh", ".txt", ""}
    return [name for name in listed.stdout.splitlines()
            if Path(name).suffix in suffixes and (ROOT / name).is_file()]  # fmt: skip


def test_the_readme_is_a_landing_page() -> None:
    """At most 200 lines, with the install, the first run and where the documentation is."""
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 200, "README.md is the landing page: move details to docs/"
    for needed in ("## Install", "## First run", "## Documentation", "<!-- first-run:start -->",
                   "<!-- first-run:end -->"):  # fmt: skip
        assert needed in text, f"README.md lacks {needed}"


def test_no_file_cites_material_outside_the_project() -> None:
    found = [name for name in _project_files()
             if OUTSIDE.search((ROOT / name).read_text(errors="replace"))]  # fmt: skip
    assert found == [], f"these files cite specifications or machine paths: {found}"


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_command_has_a_page_with_its_generated_help(command: str) -> None:
    page = DOCS / "commands" / f"{command}.md"
    assert page.is_file(), f"add {page.relative_to(ROOT)}"
    assert f"<!-- sslkit:help {command} -->" in page.read_text()


def test_every_built_in_method_and_addon_has_a_page_with_its_settings() -> None:
    from sslkit.methods.registry import ADDON_GROUP, registrations

    for name in registrations():
        if registrations()[name][0].package == "sslkit":
            page = DOCS / "methods" / f"{name}.md"
            assert page.is_file(), f"add {page.relative_to(ROOT)}"
            assert f"<!-- sslkit:method-options {name} -->" in page.read_text()
    for name, registered in registrations(ADDON_GROUP).items():
        if registered[0].package == "sslkit":
            page = DOCS / "methods" / f"{name}.md"
            assert page.is_file() and f"<!-- sslkit:addon-options {name} " in page.read_text()
