"""The kNN monitor: its number equals the shared kNN of the same features; it is logged."""

from __future__ import annotations

import json

import pytest
import torch

from sslkit.data.specs import load_split
from sslkit.engine.monitor import KnnMonitor
from sslkit.eval.knn import knn_classify
from sslkit.features.extract import EvalTransform, embed_dataset
from tests.conftest import run_cli


class _Pixels(torch.nn.Module):
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images.flatten(1)


def test_monitor_is_the_knn_of_the_embedded_splits():
    train, test = load_split("digits@300", "train"), load_split("digits@300", "test")
    transform = EvalTransform(train.info.image_size, train.info.mean, train.info.std)
    monitor = KnnMonitor(train, test, transform, every=2, k=10, temperature=0.1)
    encoder = _Pixels().train()
    measured = monitor.measure(encoder, torch.device("cpu"))
    assert encoder.training  # its mode is restored
    cpu = torch.device("cpu")
    bank = embed_dataset(encoder, train, transform, cpu)
    queries = embed_dataset(encoder, test, transform, cpu)
    expected = knn_classify(bank, train.labels, queries, test.labels, [10], 0.1).top1[10]
    assert measured == {"knn/top1": pytest.approx(expected, abs=1e-3), "knn/k": 10}
    assert measured["knn/top1"] > 80  # pixels of digits: a real signal, not chance
    assert [e for e in range(1, 6) if monitor.due(e, 5)] == [2, 4, 5]


def test_pretrain_logs_the_monitor_each_epoch(tmp_path):
    workdir = tmp_path / "run"
    run_cli("pretrain", "--method", "moco", "--data", "digits@256", "--epochs", "2",
            "--batch-size", "64", "--set", "method.queue_size=256", "--arch", "resnet18",
            "--set", "train.knn_monitor_every=1", "--set", "train.knn_monitor_k=20",
            "--no-progress", "--workdir", workdir, "--json", tmp_path / "s.json")  # fmt: skip
    lines = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in lines if r["kind"] == "epoch"]
    assert [r["knn/k"] for r in epochs] == [20, 20]
    assert all(10 < r["knn/top1"] <= 100 for r in epochs)
    assert json.loads((tmp_path / "s.json").read_text())["final"]["knn/top1"] == epochs[-1][
        "knn/top1"]
