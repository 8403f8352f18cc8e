"""End to end: pretrain --method moco+cld on digits (the shipped recipe's views) -> knn."""

from __future__ import annotations

import json

from tests.conftest import run_cli


def test_moco_cld_trains_with_the_recipe_and_scores(tmp_path):
    """The digits recipe gives MoCo its two query views; the CLD term is logged; kNN runs."""
    workdir = tmp_path / "run"
    run_cli("pretrain", "--method", "moco+cld", "--data", "digits@512", "--epochs", "1",
            "--batch-size", "64", "--set", "method.cld_groups=16", "--no-progress",
            "--workdir", workdir)  # fmt: skip
    records = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
    epoch = [r for r in records if r["kind"] == "epoch"][-1]
    assert epoch["loss/cld"] > 0 and epoch["loss"] > epoch["loss/instance"]
    result = run_cli("knn", "--checkpoint", workdir / "checkpoint.pt", "--data", "digits",
                     "--cache-dir", tmp_path / "cache", "--layer", "head", "--json", "-")
    assert json.loads(result.stdout)["best"]["top1"] > 30.0  # 10 classes: chance is 10 %


def test_methods_lists_addons_and_a_missing_second_view_is_one_line(tmp_path):
    listed = json.loads(run_cli("methods", "--json", "-").stdout)
    assert "cld" in {a["name"] for a in listed["addons"]}
    result = run_cli("pretrain", "--method", "moco+cld", "--data", "digits@256", "--epochs", "1",
                     "--set", "method.queries=1", "--workdir", tmp_path / "w", expect=2)
    assert "method.queries=2" in result.output and "Traceback" not in result.output


def test_npid_cld_trains_on_a_long_tailed_split_and_reports_shot_groups(tmp_path):
    """npid+cld (the shipped digits recipe: two views) on a long-tailed digits split; kNN
    reports many/medium/few-shot accuracy."""
    workdir = tmp_path / "run"
    run_cli("pretrain", "--method", "npid+cld", "--data", "digits~lt10", "--epochs", "1",
            "--batch-size", "64", "--set", "method.cld_groups=16", "--no-progress",
            "--workdir", workdir)  # fmt: skip
    records = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [r for r in records if r["kind"] == "epoch"][-1]["loss/cld"] > 0
    result = run_cli("knn", "--checkpoint", workdir / "checkpoint.pt", "--data", "digits~lt10",
                     "--cache-dir", tmp_path / "cache", "--json", "-")  # fmt: skip
    groups = json.loads(result.stdout)["shot_groups"]
    assert groups["many"] is not None and groups["few"] is not None
