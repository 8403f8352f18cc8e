"""One command line: one vocabulary (and the documentation's table of it), the old spellings kept
for a release, scores in % in their natural order, kNN's capped k, progress in logs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sslkit.commands.reference import MEANINGS, shared_options, shared_options_table
from tests.conftest import run_cli

#: the documentation page holding the generated table of shared options
TABLE_PAGE = Path(__file__).resolve().parents[2] / "docs" / "commands" / "index.md"


def test_every_shared_option_means_one_kind_of_value() -> None:
    """An option several commands take has one kind of value and one documented meaning."""
    for flag, uses in shared_options().items():
        assert len(set(uses.values())) == 1, f"{flag} takes {uses}: one name, one kind of value"
        assert flag in MEANINGS, f"{flag} is shared: say what it means in MEANINGS"


def test_the_documented_table_is_generated_from_the_code() -> None:
    text = TABLE_PAGE.read_text()
    start = text.index("<!-- shared-options:start -->\n") + len("<!-- shared-options:start -->\n")
    end = text.index("<!-- shared-options:end -->")
    assert text[start:end] == shared_options_table(), \
        f"{TABLE_PAGE}'s table is stale: paste `python -m sslkit.commands.reference`"


@pytest.fixture(scope="module")
def feature_files(digits_run, tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("features")
    for split in ("train", "test"):
        run_cli("extract", "--checkpoint", digits_run / "checkpoint.pt", "--data", "digits",
                "--split", split, "--out", folder / f"{split}.h5")  # fmt: skip
    return folder / "train.h5", folder / "test.h5"


def test_old_spellings_work_with_a_one_line_note(feature_files, tmp_path) -> None:
    """knn --train/--test and cluster --k still work this release, saying what to write."""
    train, test = feature_files
    old = run_cli("knn", "--train", train, "--test", test, "--json", tmp_path / "old.json")
    notes = [line for line in old.stderr.splitlines() if line.startswith("note:")]
    assert notes == ["note: --train is deprecated and goes in the next release: write "
                     "--train-features",
                     "note: --test is deprecated and goes in the next release: write "
                     "--test-features"]  # fmt: skip
    run_cli("knn", "--train-features", train, "--test-features", test,
            "--json", tmp_path / "new.json")  # fmt: skip
    old_json, new_json = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("old", "new"))
    assert old_json["k"] == new_json["k"]
    clustered = run_cli("cluster", "--features", train, "--k", "5", "--out", tmp_path / "c.h5")
    assert "write --clusters" in clustered.stderr
    both = run_cli("cluster", "--features", train, "--k", "5", "--clusters", "5", "--out",
                   tmp_path / "d.h5", expect=2)  # fmt: skip
    assert "--k is the old spelling of --clusters" in both.output


def test_scores_are_percent_in_natural_order_and_a_large_k_is_capped(feature_files,
                                                                     tmp_path) -> None:  # fmt: skip
    """k = 10, 20, 100, 200, 5000 in that order; k = 5000 > 1,347 images says it used them all."""
    train, test = feature_files
    result = run_cli("knn", "--train-features", train, "--test-features", test, "--k",
                     "5000,10,200,20,100", "--json", tmp_path / "k.json")  # fmt: skip
    output = json.loads((tmp_path / "k.json").read_text())
    assert list(output["k"]) == ["10", "20", "100", "200", "5000"]
    assert output["k"]["5000"]["neighbours"] == 1347 and output["k"]["200"]["neighbours"] == 200
    assert output["notes"] == ["k=5000 is more than the 1347 training images: it votes with "
                               "all 1347"]  # fmt: skip
    assert "note: k=5000 is more than the 1347 training images" in result.stderr
    assert output["score_unit"] == "percent" and 10 < output["best"]["top1"] <= 100
    assert output["k"]["10"]["top1"] == output["best"]["top1"] or output["best"]["k"] != 10
    text = (tmp_path / "k.json").read_text()
    assert text.index('"k"') < text.index('"inputs"')  # the scores first, as built
    clustered = run_cli("cluster", "--features", train, "--clusters", "10", "--out",
                        tmp_path / "c.h5", "--json", "-")  # fmt: skip
    level = json.loads(clustered.stdout)["levels"][0]
    assert 1 < level["ami"] <= 100 and 10 <= level["purity"] <= 100  # in %, not fractions


def test_progress_is_logged_without_a_terminal(digits_run, tmp_path, monkeypatch) -> None:
    """No terminal (as under CliRunner, SLURM or CI): plain lines with the time remaining;
    --no-progress: none."""
    monkeypatch.setenv("SSLKIT_PROGRESS_SECONDS", "0")
    args = ["extract", "--checkpoint", digits_run / "checkpoint.pt", "--data", "digits@200",
            "--batch-size", "64"]  # fmt: skip
    shown = run_cli(*args, "--out", tmp_path / "a.h5")
    lines = [line for line in shown.stderr.splitlines() if line.startswith("[sslkit] ")]
    assert lines[0].startswith("[sslkit] extract digits@200 train: 64/200 images (32 %)")
    assert "images/s" in lines[0] and lines[0].endswith(" left")
    assert lines[-1].startswith("[sslkit] extract digits@200 train: 200/200 images (100 %)")
    assert "done in" in lines[-1]
    quiet = run_cli(*args, "--out", tmp_path / "b.h5", "--no-progress")
    assert "[sslkit]" not in quiet.stderr
