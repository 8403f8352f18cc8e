"""End to end: pretrain -> extract -> knn on digits, with provenance and the feature cache."""

from __future__ import annotations

import json

import h5py
import pytest
import torch

from sslkit.features import service
from sslkit.models.backbones import build_backbone
from sslkit.utils.atomic import sha256_file
from tests.conftest import run_cli


def test_pretrain_writes_config_metrics_and_checkpoint(digits_run):
    """The workdir holds the resolved config, metrics.jsonl and a weights-only checkpoint."""
    assert (digits_run / "config.yaml").is_file()
    lines = [json.loads(x) for x in (digits_run / "metrics.jsonl").read_text().splitlines()]
    assert {r["kind"] for r in lines} == {"start", "step", "epoch"}
    assert all("loss" in r and "lr" in r for r in lines if r["kind"] == "step")
    ckpt = torch.load(digits_run / "checkpoint.pt", weights_only=True)
    assert ckpt["format"] == "sslkit.checkpoint" and ckpt["method"] == "moco"
    assert ckpt["epoch"] == 2 and ckpt["step"] == 2 * (512 // 64)
    assert {"optimizer", "rng", "method_state", "config"} <= set(ckpt)
    assert "queue.buffer" in ckpt["method_state"]
    backbone = build_backbone("resnet18")
    backbone.load_state_dict(ckpt["encoder"])  # torchvision naming, strict


def test_extract_and_knn_from_files(digits_run, tmp_path):
    """extract writes features with provenance; knn reads them and scores sanely."""
    ckpt = digits_run / "checkpoint.pt"
    for split in ("train", "test"):
        run_cli("extract", "--checkpoint", ckpt, "--data", "digits", "--split", split,
                "--out", tmp_path / f"{split}.h5")  # fmt: skip
    with h5py.File(tmp_path / "test.h5") as handle:
        assert handle["features"].shape == (450, 512)
        assert handle["labels"].shape == (450,) and handle["indices"].shape == (450,)
        attrs = dict(handle.attrs)
    assert attrs["checkpoint_sha256"] == sha256_file(ckpt)
    assert attrs["method"] == "moco" and attrs["arch"] == "resnet18"
    assert attrs["split"] == "test" and attrs["layer"] == "backbone"
    assert len(attrs["dataset_fingerprint"]) == 16
    run_cli("knn", "--train-features", tmp_path / "train.h5",
            "--test-features", tmp_path / "test.h5",
            "--json", tmp_path / "knn.json")  # fmt: skip
    result = json.loads((tmp_path / "knn.json").read_text())
    assert set(result["k"]) == {"10", "20", "100", "200"}
    assert result["best"]["top1"] > 60.0  # 10 classes: chance is 10 %
    assert result["inputs"]["train"]["checkpoint_sha256"] == attrs["checkpoint_sha256"]


def test_extract_refuses_to_overwrite(digits_run, tmp_path):
    """An existing output needs --force."""
    out = tmp_path / "f.h5"
    out.write_text("x")
    result = run_cli("extract", "--checkpoint", digits_run / "checkpoint.pt", "--data", "digits",
                     "--out", out, expect=2)  # fmt: skip
    assert "--force" in result.output


def test_knn_checkpoint_second_run_reads_the_cache(digits_run, tmp_path, monkeypatch):
    """A second knn --checkpoint run with the same inputs does not re-extract."""
    args = ["knn", "--checkpoint", digits_run / "checkpoint.pt", "--data", "digits",
            "--cache-dir", tmp_path / "cache"]  # fmt: skip
    run_cli(*args, "--json", tmp_path / "first.json")
    first = json.loads((tmp_path / "first.json").read_text())
    assert not first["inputs"]["train"]["cache_hit"]

    def no_extraction(*_args, **_kwargs):
        raise AssertionError("features were re-extracted instead of read from the cache")

    monkeypatch.setattr(service, "compute_features", no_extraction)
    run_cli(*args, "--json", tmp_path / "second.json")
    second = json.loads((tmp_path / "second.json").read_text())
    assert second["inputs"]["train"]["cache_hit"] and second["inputs"]["test"]["cache_hit"]
    assert second["best"] == first["best"]
    assert not first["neighbours_cache_hit"] and second["neighbours_cache_hit"]


def test_stored_neighbours_answer_other_k_and_temperature(digits_run, tmp_path, monkeypatch):
    """Another --k / --temperature on cached features only re-votes, with exact results."""
    from sslkit.eval import knn as knn_module
    from sslkit.features.store import read_features

    args = ["knn", "--checkpoint", digits_run / "checkpoint.pt", "--data", "digits",
            "--cache-dir", tmp_path / "cache"]  # fmt: skip
    run_cli(*args, "--json", tmp_path / "first.json")
    direct = knn_module.knn_classify  # the reference: a fresh search of the cached features

    def no_search(*_args, **_kwargs):
        raise AssertionError("the neighbour search ran again")

    monkeypatch.setattr(knn_module, "nearest_neighbours", no_search)
    run_cli(*args, "--k", "5,50", "--temperature", "0.5", "--json", tmp_path / "other.json")
    other = json.loads((tmp_path / "other.json").read_text())
    assert other["neighbours_cache_hit"]
    train = read_features(other["inputs"]["train"]["cache_file"])
    test = read_features(other["inputs"]["test"]["cache_file"])
    monkeypatch.undo()
    expected = direct(train.features, train.labels, test.features, test.labels, [5, 50], 0.5)
    assert other["k"] == expected.as_dict()["k"]


def test_layer_head_gives_the_projection(digits_run, tmp_path):
    """--layer head extracts the method's 128-d normalised embedding."""
    run_cli("extract", "--checkpoint", digits_run / "checkpoint.pt", "--data", "digits@100",
            "--layer", "head", "--out", tmp_path / "h.h5")  # fmt: skip
    with h5py.File(tmp_path / "h.h5") as handle:
        features = handle["features"][()]
    assert features.shape == (100, 128)
    assert abs(float((features**2).sum(1).mean()) - 1.0) < 1e-4


def test_release_format_checkpoint_is_detected(digits_run, tmp_path):
    """A MoCo-release style checkpoint (module.encoder_q.*) is read by extract."""
    encoder = torch.load(digits_run / "checkpoint.pt", weights_only=True)["encoder"]
    release = {"arch": "resnet18", "epoch": 2, "state_dict": {
        **{f"module.encoder_q.{k}": v for k, v in encoder.items()},
        **{f"module.encoder_k.{k}": v for k, v in encoder.items()},
        "module.encoder_q.fc.0.weight": torch.zeros(512, 512),
        "module.queue": torch.zeros(128, 16),
    }}  # fmt: skip
    torch.save(release, tmp_path / "release.pth.tar")
    torch.save(encoder, tmp_path / "plain.pth")
    for name in ("release.pth.tar", "plain.pth"):
        result = run_cli("extract", "--checkpoint", tmp_path / name, "--data", "digits@50",
                         "--out", tmp_path / f"{name}.h5", "--json", "-")  # fmt: skip
        assert json.loads(result.stdout)["arch"] == "resnet18"


def test_knn_unsupervised_score(digits_run, tmp_path):
    """`knn --unsupervised-score` adds NMI, R and their product to the JSON results."""
    out = tmp_path / "knn.json"
    run_cli("knn", "--checkpoint", digits_run / "checkpoint.pt", "--data", "digits@512",
            "--cache-dir", tmp_path / "cache", "--unsupervised-score", "--score-images", "200",
            "--json", out)  # fmt: skip
    score = json.loads(out.read_text())["unsupervised_score"]
    assert score["images"] == 200 and score["clusters"] == 10 and score["seed"] == 0
    assert 0 < score["nmi"] <= 100 and 0 < score["retrieval"] <= 100  # in %
    assert score["score"] == pytest.approx(score["nmi"] * score["retrieval"] / 100)


def test_knn_unsupervised_score_needs_a_checkpoint(tmp_path):
    train = tmp_path / "missing.h5"
    result = run_cli("knn", "--train-features", train, "--test-features", train,
                     "--unsupervised-score",
                     expect=2)  # fmt: skip
    assert "--unsupervised-score" in result.output and "--checkpoint" in result.output


def test_knn_long_tail_reports_shot_groups(digits_run, tmp_path):
    """digits~lt10: a long-tailed train split, the balanced test split, many/medium/few."""
    args = ["knn", "--checkpoint", digits_run / "checkpoint.pt", "--cache-dir", tmp_path / "c"]
    result = run_cli(*args, "--data", "digits~lt10", "--json", tmp_path / "lt.json")
    assert "few (<20)" in result.output  # the many/medium/few table
    data = json.loads((tmp_path / "lt.json").read_text())
    # digits~lt10 keeps 131, 101, 78, 60, 47, 36, 28, 21, 16, 13 training digits
    assert data["train_size"] == 531 and data["test_size"] == 450
    assert data["inputs"]["train"]["dataset"] == "digits~lt10"
    shots = data["shot_groups"]
    assert shots["k"] == data["best"]["k"]
    assert (shots["many_above"], shots["few_below"]) == (100, 20)
    assert [shots[group]["classes"] for group in ("many", "medium", "few")] == [2, 6, 2]
    assert [shots[group]["train_images"] for group in ("many", "medium", "few")] == [232, 270, 29]
    assert shots["imbalance_ratio"] == pytest.approx(131 / 13)
    assert sum(shots[g]["test_images"] for g in ("many", "medium", "few")) == 450
    overall = sum(shots[g]["top1"] * shots[g]["test_images"] for g in ("many", "medium", "few"))
    assert overall / 450 == pytest.approx(data["best"]["top1"], abs=1.0)  # ~45 tests per class
    run_cli(*args, "--data", "digits", "--json", tmp_path / "balanced.json")
    balanced = json.loads((tmp_path / "balanced.json").read_text())
    assert "shot_groups" not in balanced  # 131-137 training digits per class: not long-tailed
    fingerprints = {d["inputs"]["train"]["dataset_fingerprint"] for d in (data, balanced)}
    assert len(fingerprints) == 2
    assert data["inputs"]["train"]["cache_file"] != balanced["inputs"]["train"]["cache_file"]


@pytest.mark.parametrize(("spec", "message"), [
    ("digits~lt0.5", "bad imbalance ratio"),
    ("stl10:/nowhere~lt10", "mostly unlabelled"),
    ("digits@100~lt50", "use a smaller R"),
])  # fmt: skip
def test_knn_bad_long_tail_spec_is_one_line_exit_2(digits_run, tmp_path, spec, message):
    """A bad ratio, unlabelled data or a tail without images: exit 2, one line."""
    result = run_cli("knn", "--checkpoint", digits_run / "checkpoint.pt", "--data", spec,
                     "--cache-dir", tmp_path / "c", expect=2)  # fmt: skip
    assert message in result.output and len(result.output.strip().splitlines()) == 1
