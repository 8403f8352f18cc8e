"""The kNN monitor: weighted kNN top-1 of the encoder during pre-training (NPID / CLD style).

At the end of every ``train.knn_monitor_every`` epochs the online backbone embeds the
training split (the bank) and the test split (the queries) with the evaluation view, and
the shared kNN (``sslkit.eval.knn``) scores them; the result goes into that epoch's
``metrics.jsonl`` record as ``knn/top1`` (and into ``curves.png``). Off by default: it
costs one pass over both splits.
"""

from __future__ import annotations

from typing import Any

import torch

from sslkit.data.base import ImageDataset
from sslkit.errors import BadInput
from sslkit.features.extract import EvalTransform, embed_dataset


class KnnMonitor:
    """Scores an encoder by weighted kNN of the test split against the training split."""

    def __init__(self, train: ImageDataset, test: ImageDataset, transform: EvalTransform,
                 every: int, k: int, temperature: float) -> None:  # fmt: skip
        if (train.labels < 0).any() or (test.labels < 0).any():
            raise BadInput(f"train.knn_monitor_every needs labelled data, and {train.spec} has "
                           "unlabelled images: set train.knn_monitor_every=0")  # fmt: skip
        self.train, self.test, self.transform = train, test, transform
        self.every, self.k, self.temperature = every, k, temperature

    def due(self, epoch: int, last_epoch: int) -> bool:
        """Whether to measure after ``epoch`` (1-based; always after the last one)."""
        return self.every > 0 and (epoch % self.every == 0 or epoch == last_epoch)

    @torch.no_grad()
    def measure(self, encoder: torch.nn.Module, device: torch.device,
                batch_size: int = 256) -> dict[str, Any]:  # fmt: skip
        """``{"knn/top1": ..., "knn/k": k}`` of ``encoder`` (put back in its mode after)."""
        from sslkit.eval.knn import knn_classify

        was_training = encoder.training
        encoder.eval()
        try:
            bank = embed_dataset(encoder, self.train, self.transform, device, batch_size)
            queries = embed_dataset(encoder, self.test, self.transform, device, batch_size)
        finally:
            encoder.train(was_training)
        result = knn_classify(bank, self.train.labels, queries, self.test.labels, [self.k],
                              self.temperature, device)  # fmt: skip
        return {"knn/top1": result.top1[self.k], "knn/k": self.k}  # in %, exact
