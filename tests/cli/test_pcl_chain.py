"""End to end: pretrain --method pcl on digits (warm-up, then ProtoNCE) -> resume -> knn."""

from __future__ import annotations

import json

import torch

from tests.conftest import epoch_records, run_cli

QUICK_PCL = ["--data", "digits@512", "--batch-size", "64", "--no-progress",
             "--set", "method.queue_size=256", "--set", "method.num_clusters=[100,120]",
             "--set", "method.num_negative_prototypes=16", "--set", "method.warmup_epochs=1",
             "--set", "method.kmeans_nredo=1", "--set", "train.checkpoint_every=1"]  # fmt: skip


def test_pcl_trains_resumes_and_scores(tmp_path):
    """The warm-up epoch is MoCo; then the prototype term; --resume keeps the clustering."""
    workdir = tmp_path / "run"
    run_cli("pretrain", "--method", "pcl", "--epochs", "2", "--workdir", workdir, *QUICK_PCL)
    epochs = epoch_records(workdir)
    assert "loss/prototype" not in epochs[0] and "loss/prototype" in epochs[1]
    extra = torch.load(workdir / "checkpoint.pt", weights_only=True)["method_state"]["_extra_state"]
    assert extra["levels"] == 2 and extra["centroids_1"].shape == (120, 128)
    assert "parents_0" not in extra  # flat clusterings
    run_cli("pretrain", "--method", "pcl", "--epochs", "3", "--workdir", workdir, "--resume",
            *QUICK_PCL)  # fmt: skip
    assert [e["epoch"] for e in epoch_records(workdir)] == [1, 2, 3]
    result = run_cli("knn", "--checkpoint", workdir / "checkpoint.pt", "--data", "digits",
                     "--cache-dir", tmp_path / "cache", "--json", "-")  # fmt: skip
    assert json.loads(result.stdout)["best"]["top1"] > 50.0  # 10 classes: chance is 10 %
