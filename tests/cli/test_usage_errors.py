"""Option-value mistakes get sslkit's error contract: one line on stderr, exit code 2."""

from __future__ import annotations

import pytest

from tests.conftest import run_cli


@pytest.mark.parametrize("args, message", [
    (["pretrain", "--method", "moco", "--launcher", "local", "--nodes", "0"],
     "Invalid value for '--nodes'"),
    (["pretrain", "--method", "moco", "--launcher", "bogus"], "Invalid value for '--launcher'"),
    (["cluster", "--features", "f.h5", "--clusters", "5", "--out", "c.h5",
      "--max-train-points", "0"],
     "Invalid value for '--max-train-points'"),
    (["pretrain"], "Missing option '--method'"),
    (["knn", "--bogus"], "No such option '--bogus'"),
    (["nosuch"], "No such command 'nosuch'"),
])  # fmt: skip
def test_usage_errors_are_one_line_exit_2(args, message):
    """Each names the option and points at the command's --help."""
    result = run_cli(*args, expect=2)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert "--help" in lines[0]
