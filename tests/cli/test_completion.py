"""Shell completion as the documentation sets it up: bash completes commands, options,
choices, methods and recipes; the zsh and fish scripts are generated."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs" / "completion.md"
BASH = shutil.which("bash")


def _env() -> dict[str, str]:
    """The environment with this interpreter's scripts (``sslkit``) first on the PATH."""
    scripts = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": scripts + os.pathsep + os.environ.get("PATH", "")}


@pytest.mark.skipif(BASH is None or shutil.which("sslkit", path=_env()["PATH"]) is None,
                    reason="needs bash and the sslkit script on the PATH")
def test_bash_completes_as_documented() -> None:
    """The documented bash line, then completions of a few command lines."""
    setup = 'eval "$(_SSLKIT_COMPLETE=bash_source sslkit)"'
    assert setup in DOCS.read_text(), "the test must run the line the documentation gives"
    script = setup + '''
t() { COMP_WORDS=("$@"); COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 )); COMPREPLY=();
      _sslkit_completion sslkit; echo "${COMPREPLY[*]}"; }
t sslkit kn
t sslkit knn --train
t sslkit knn --layer ""
t sslkit pretrain --method mo
t sslkit pretrain --method moco+
t sslkit pretrain --method hcsc --config hcsc/imagenet-multicrop-2
'''
    done = subprocess.run([BASH, "-c", script], capture_output=True, text=True, env=_env(),
                          timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "knn", "--train-features --train-labels", "backbone head", "moco", "moco+cld moco+logo",
        "hcsc/imagenet-multicrop-200ep"]  # fmt: skip


@pytest.mark.parametrize(("shell", "expected"), [("zsh", "#compdef sslkit"),
                                                 ("fish", "function _sslkit_completion")])
def test_zsh_and_fish_scripts_are_generated(shell: str, expected: str) -> None:
    """``_SSLKIT_COMPLETE=<shell>_source`` prints the shell's script, as documented."""
    assert f"_SSLKIT_COMPLETE={shell}_source sslkit" in DOCS.read_text()
    done = subprocess.run([sys.executable, "-c", "from sslkit.cli import main; main()"],
                          capture_output=True, text=True, timeout=120,
                          env={**_env(), "_SSLKIT_COMPLETE": f"{shell}_source"})  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert expected in done.stdout
