"""``sslkit semisup`` end to end on digits: balanced subset, JSON, workdir, resume, errors."""

from __future__ import annotations

import json

from tests.conftest import run_cli


def test_semisup_runs_resumes_and_reports(digits_run, tmp_path):
    """10 % of the labels, 2 epochs: the JSON names the subset, recipe and encoder."""
    workdir = tmp_path / "semi"
    args = ["semisup", "--checkpoint", digits_run / "checkpoint.pt", "--data", "digits",
            "--labels", "0.1", "--recipe", "pcl", "--epochs", "2", "--batch-size", "64",
            "--workdir", workdir]  # fmt: skip
    first = json.loads(run_cli(*args, "--json", "-").stdout)
    assert first["protocol"] == "semisup" and first["labelled"]["images"] == 136
    assert first["head_lr"] == 0.1 and first["recipe"]["milestones"] == [12, 16]
    assert len(first["inputs"]["checkpoint_sha256"]) == 64
    assert first["result"]["epochs"] == 2 and 0 <= first["result"]["top1"] <= 100
    assert json.loads((workdir / "semisup.json").read_text())["result"] == first["result"]
    assert "--resume" in run_cli(*args, expect=2).output
    again = json.loads(run_cli(*args, "--resume", "--json", "-").stdout)
    assert again["history"] == first["history"]
    other = run_cli(*args, "--resume", "--seed", "1", expect=2)
    assert "another subset" in other.output


def test_semisup_needs_labels_or_a_subset_file(digits_run):
    """Neither --labels nor --subset-file: one line, exit 2."""
    result = run_cli("semisup", "--checkpoint", digits_run / "checkpoint.pt", "--data", "digits",
                     expect=2)  # fmt: skip
    assert "--labels" in result.output and len(result.output.strip().splitlines()) == 1
