"""End to end: pretrain --method hcsc on digits -> resume -> extract (head) -> cluster -> knn."""

from __future__ import annotations

import json

import h5py
import torch

from tests.conftest import epoch_records, run_cli

QUICK_HCSC = ["--data", "digits@512", "--batch-size", "64", "--no-progress",
              "--set", "method.queue_size=256", "--set", "method.num_clusters=[32,16,8]",
              "--set", "method.warmup_epochs=1", "--set", "method.kmeans_nredo=1",
              "--set", "train.checkpoint_every=1"]  # fmt: skip


def test_hcsc_trains_resumes_and_clusters(tmp_path):
    """Warm-up epoch is plain MoCo, later epochs add prototypes; --resume keeps the clustering."""
    workdir = tmp_path / "run"
    run_cli("pretrain", "--method", "hcsc", "--epochs", "2", "--workdir", workdir, *QUICK_HCSC)
    epochs = epoch_records(workdir)
    assert "loss/prototype" not in epochs[0] and "loss/prototype" in epochs[1]
    state = torch.load(workdir / "checkpoint.pt", weights_only=True)["method_state"]
    extra = state["_extra_state"]
    assert extra["levels"] == 3 and extra["centroids_0"].shape == (32, 128)
    assert torch.equal(extra["assignments_1"], extra["parents_0"][extra["assignments_0"]])
    run_cli("pretrain", "--method", "hcsc", "--epochs", "3", "--workdir", workdir, "--resume",
            *QUICK_HCSC)  # fmt: skip
    assert [e["epoch"] for e in epoch_records(workdir)] == [1, 2, 3]

    features = tmp_path / "head.h5"
    run_cli("extract", "--checkpoint", workdir / "checkpoint.pt", "--data", "digits",
            "--layer", "head", "--out", features)  # fmt: skip
    run_cli("cluster", "--features", features, "--clusters", "40,20,10", "--hierarchical",
            "--out", tmp_path / "clusters.h5", "--json", tmp_path / "clusters.json")  # fmt: skip
    levels = json.loads((tmp_path / "clusters.json").read_text())["levels"]
    assert [level["k"] for level in levels] == [40, 20, 10]
    assert levels[-1]["ami"] > 20  # in %; 10 digit classes: chance is 0
    with h5py.File(tmp_path / "clusters.h5") as handle:
        lower = handle["level_0/assignments"][()]
        parents = handle["level_0/parents"][()]
        assert (handle["level_1/assignments"][()] == parents[lower]).all()

    run_cli("knn", "--checkpoint", workdir / "checkpoint.pt", "--data", "digits",
            "--cache-dir", tmp_path / "cache", "--json", tmp_path / "knn.json")  # fmt: skip
    assert json.loads((tmp_path / "knn.json").read_text())["best"]["top1"] > 60.0


def test_hcsc_too_many_prototypes_is_bad_input(tmp_path):
    """More bottom prototypes than images is refused before training, with the fix."""
    result = run_cli("pretrain", "--method", "hcsc", "--data", "digits@100", "--epochs", "1",
                     "--workdir", tmp_path / "run", "--set", "method.num_clusters=[500,100]",
                     expect=2)  # fmt: skip
    assert "method.num_clusters" in result.output
    assert not (tmp_path / "run" / "checkpoint.pt").exists()
