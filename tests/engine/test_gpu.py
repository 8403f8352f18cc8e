"""CUDA path: AMP, channels_last and the GPU device (skipped, with the reason, without CUDA)."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import QUICK_MOCO, run_cli


@pytest.mark.gpu
def test_pretrain_on_cuda_with_amp(tmp_path):
    """One epoch on CUDA with mixed precision writes a finite-loss checkpoint."""
    run_cli("pretrain", "--method", "moco", "--data", "digits@256", "--epochs", "1",
            "--device", "cuda", "--workdir", tmp_path, *QUICK_MOCO)  # fmt: skip
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["scaler"], "the AMP grad scaler state is saved"
    assert all(torch.isfinite(v).all() for v in state["encoder"].values() if v.is_floating_point())


@pytest.mark.gpu
def test_knn_on_cuda_matches_cpu():
    """kNN on the GPU gives the CPU's accuracies."""
    from sslkit.eval.knn import knn_classify

    gen = torch.Generator().manual_seed(0)
    bank, queries = torch.randn(500, 16, generator=gen), torch.randn(100, 16, generator=gen)
    labels, truth = torch.randint(0, 5, (500,), generator=gen), torch.randint(0, 5, (100,))
    cpu = knn_classify(bank, labels, queries, truth, (10, 20), 0.07, "cpu")
    gpu = knn_classify(bank, labels, queries, truth, (10, 20), 0.07, "cuda")
    assert cpu.top1 == gpu.top1
