"""NPID: non-parametric instance discrimination with a memory bank (Wu et al., CVPR 2018).

Every training image is its own class; its "classifier weight" is its row of a memory
bank of unit vectors (``sslkit.nn.memory_bank``), a running average of its past
embeddings. The loss is a temperature-scaled softmax over all N rows (``nce_k=0``) or its
NCE approximation with K uniformly drawn noise rows (``nce_k=K``); after each optimiser
step the batch's rows are updated with the (detached) embeddings.
It follows the authors' code (lemniscate.pytorch).

Differences from the official code, all on purpose:

* the bank update runs in :meth:`NPID.after_optimizer_step` instead of inside the custom
  autograd backward: the same rows, the same embeddings, the same moment of the step
  (the bank is not an optimiser parameter, so before/after the SGD step is the same);
* distributed: the update all-gathers the global batch's (indices, embeddings) so every
  rank's bank stays identical, and the NCE constant Z is the mean over ranks of the first
  batch's statistics; noise rows are drawn per rank;
* NCE similarities of the K+1 selected rows are read off one ``b x N`` product when the
  bank is small (N ≤ ``FULL_PRODUCT_RATIO``·(K+1)) instead of gathering ``b x (K+1) x D``
  rows: the same numbers, much less memory traffic;
* a row repeated in one update is written once, from its last occurrence (the official
  single-process sampler never repeats an index within a batch);
* ``queries`` > 1 views per image (CLD's NPID+CLD uses two) each get the NPID loss against
  the bank as it was before the step; the loss is their mean and the bank is updated with
  view 1, then view 2, ... (as NPID + CLD does). NPID itself uses one view;
* a model built with an unknown training-set size (``DataInfo.num_samples == 0``, e.g.
  rebuilt from a checkpoint just to embed images) has an empty bank that takes the
  checkpoint's bank shape; it refuses to train (:class:`~sslkit.errors.BadInput`);
* not implemented: ``iter_size`` gradient accumulation and the README's softmax variant
  with 65,536 sampled negatives (no code for it in the repository).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from sslkit.data.base import DataInfo
from sslkit.data.views import ViewSpec, view_spec_from_config
from sslkit.distributed import all_reduce_mean
from sslkit.errors import BadInput
from sslkit.methods.base import COMMON_AUGMENT, Batch, Method, StepContext, hp
from sslkit.nn.heads import HEAD_KINDS, EncoderWithHead, build_head
from sslkit.nn.memory_bank import MemoryBank

NCE_EPS = 1e-7  # ε of lemniscate's NCECriterion
# NCE reads a b x N product when N <= this x (K + 1); on 2 CPU cores (b=256, D=128,
# K=4096, forward + backward) the product is 6x faster at N=20k and breaks even at ~64x
FULL_PRODUCT_RATIO = 32


def full_softmax_loss(embedding: torch.Tensor, bank: torch.Tensor, indices: torch.Tensor,
                      temperature: float) -> torch.Tensor:  # fmt: skip
    """Non-parametric softmax (lemniscate ``LinearAverage``): ``mean_i CE(f_i·Vᵀ/T, i)``.

    Args:
        embedding: ``b x D`` unit rows f (with gradient).
        bank: ``N x D`` memory bank V (detached: no gradient reaches it).
        indices: ``b`` dataset index of every row, the target class.
        temperature: T.
    Returns:
        The scalar mean loss; its gradient in f_i is ``(softmax_i − onehot_i)·V / (T·b)``.
    """
    logits = (embedding @ bank.t()).float() / temperature
    return F.cross_entropy(logits, indices)


def nce_similarities(embedding: torch.Tensor, bank: MemoryBank,
                     row_ids: torch.Tensor) -> torch.Tensor:  # fmt: skip
    """``b x (K+1)`` cosine similarities ``f_i·v_j`` of each sample with its selected rows.

    ``row_ids`` is ``b x (K+1)`` (see :meth:`MemoryBank.sample_with_positive`). For a bank
    of at most ``FULL_PRODUCT_RATIO``·(K+1) rows one ``b x N`` product is gathered from;
    otherwise the ``b x (K+1) x D`` rows are gathered (lemniscate's ``bmm``).
    """
    if bank.size <= FULL_PRODUCT_RATIO * row_ids.shape[1]:
        return (embedding @ bank.vectors.t()).gather(1, row_ids)
    rows = bank.rows(row_ids).to(embedding.dtype)
    return torch.bmm(rows, embedding.unsqueeze(2)).squeeze(2)


def nce_z_estimate(exp_similarities: torch.Tensor, num_samples: int) -> torch.Tensor:
    """NPID's normalisation constant ``Z = N · mean(exp(v·f/T))`` over one batch's entries."""
    return exp_similarities.detach().float().mean() * num_samples


def nce_loss(probabilities: torch.Tensor, num_samples: int, eps: float = NCE_EPS) -> torch.Tensor:
    """NCE loss of lemniscate's ``NCECriterion`` (noise distribution P_n = 1/N).

    With ``P = probabilities`` (``b x (K+1)``, ``P_ij = exp(v_j·f_i/T)/Z``, the positive in
    column 0):

    ``L = −(1/b) Σ_i [ ln(P_i0 / (P_i0 + K/N + ε)) + Σ_{j≥1} ln((K/N) / (P_ij + K/N + ε)) ]``
    """
    batch, columns = probabilities.shape
    noise = (columns - 1) / num_samples  # K · P_n
    positive = probabilities[:, 0]
    negatives = probabilities[:, 1:]
    log_positive = torch.log(positive / (positive + noise + eps))
    log_negatives = torch.log(noise / (negatives + noise + eps))
    return -(log_positive.sum() + log_negatives.sum()) / batch


class NPID(Method):
    """NPID: an encoder with a linear 128-d head and a memory bank of every image's embedding."""

    name = "npid"
    description = "NPID: instance discrimination against a memory bank, NCE (Wu et al. 2018)"
    # ImageNet recipe (main.py): SGD lr 0.03, x0.1 at epochs 120 and 160, 200 epochs, 256
    default_train = {"lr": 0.03, "weight_decay": 1e-4, "momentum": 0.9, "schedule": "step",
                     "milestones": [120, 160], "gamma": 0.1, "epochs": 200,
                     "batch_size": 256}  # fmt: skip
    # ImageNet augmentation: crop (0.2, 1), grayscale 0.2, ColorJitter(0.4, 0.4, 0.4, 0.4)
    # always, flip; no blur (sslkit's pipeline applies jitter before grayscale)
    default_augment = {**COMMON_AUGMENT, "jitter_prob": 1.0, "jitter": [0.4, 0.4, 0.4, 0.4],
                       "grayscale_prob": 0.2, "blur_prob": 0.0}  # fmt: skip
    check_settings = {"nce_k": 16}

    @dataclass
    class Config:
        """NPID hyper-parameters (defaults: the ImageNet recipe)."""

        dim: int = hp(128, "embedding dimension D (bank rows)", low=1)
        head: str = hp("linear", "projection head: linear (NPID), mlp, norm_linear or norm_mlp",
                       choices=("linear", "mlp", "norm_linear", "norm_mlp"))
        head_bn: bool = hp(False, "BatchNorm after the hidden linear of mlp / norm_mlp heads")
        nce_k: int = hp(4096, "noise rows K per image for NCE; 0 = full softmax over the bank")
        temperature: float = hp(0.07, "temperature T (ImageNet 0.07, CIFAR 0.1)", above=0)
        bank_momentum: float = hp(0.5, "memory-bank momentum m: v <- normalize(m v + (1-m) f)",
                                  high=1)
        queries: int = hp(1, "augmented views per image, each scored against the bank (loss: "
                          "their mean; bank updated with each in turn; NPID+CLD: 2)",
                          low=1)  # fmt: skip

    def __init__(self, config: Config, backbone: torch.nn.Module, data_info: DataInfo) -> None:
        _check_config(config)
        super().__init__(config, backbone, data_info)
        width = backbone.feature_dim
        head = build_head(config.head, width, config.dim, hidden_dim=width,
                          batch_norm=config.head_bn)  # fmt: skip
        self.online = EncoderWithHead(backbone, head)
        self.memory_bank = MemoryBank(data_info.num_samples, config.dim, config.bank_momentum)
        self.register_buffer("nce_z", torch.tensor(-1.0))  # < 0: not estimated yet
        # (indices, detached embeddings) of this step's views, written after the step
        self._pending: list[tuple[torch.Tensor, torch.Tensor]] = []

    @property
    def num_samples(self) -> int:
        """N, the number of training images (rows of the memory bank)."""
        return self.memory_bank.size

    def _require_bank(self) -> None:
        if self.num_samples == 0:
            raise BadInput("NPID needs the number of training images N to size its memory "
                           "bank, but the data info says 0: build it with "
                           "DataInfo.num_samples set (the trainer sets it from the training "
                           "set)")  # fmt: skip

    # -- what the engine asks -------------------------------------------------------------
    def views(self, augment: dict[str, Any]) -> ViewSpec:
        """``queries`` augmented views per image (NPID: one); needs N."""
        self._require_bank()
        return view_spec_from_config(augment, self.data_info, count=self.config.queries)

    def online_views(self) -> int:
        """Views per step that go through the backbone with gradient: all ``queries``."""
        return self.config.queries

    def representation(self, images: torch.Tensor) -> torch.Tensor:
        """The shared representation h: the backbone's pooled feature (``B x width``)."""
        return self.online.backbone(images)

    def project(self, representation: torch.Tensor) -> torch.Tensor:
        """The NPID embedding f = normalize(head(h)) (``B x dim``, unit rows)."""
        return F.normalize(self.online.head(representation), dim=1)

    def training_step(self, batch: Batch, ctx: StepContext) -> dict[str, torch.Tensor]:
        """Per view: h = backbone(x), f = normalize(head(h)), NPID loss against the bank.

        The bank is read as it was before this step; the embeddings are kept for the
        update in :meth:`after_optimizer_step`. With several views the loss is the mean.
        """
        self._require_bank()
        representations = [self.representation(view) for view in batch.views]
        embeddings = [self.project(h) for h in representations]
        losses = [self.instance_loss(f, batch.indices, ctx.generator) for f in embeddings]
        loss = losses[0] if len(losses) == 1 else torch.stack(losses).mean()
        self._pending = [(batch.indices, f.detach()) for f in embeddings]
        return {"loss": loss, "loss/instance": loss.detach()}

    def instance_loss(self, embedding: torch.Tensor, indices: torch.Tensor,
                      generator: torch.Generator | None = None) -> torch.Tensor:  # fmt: skip
        """NPID's loss of ``b`` unit embeddings whose dataset indices are ``indices``.

        ``nce_k=0``: :func:`full_softmax_loss`. ``nce_k=K``: K noise rows per sample drawn
        uniformly with replacement (own row in column 0), ``P = exp(f·v/T)/Z`` with Z
        estimated once, on the first call (:func:`nce_z_estimate`), then :func:`nce_loss`.
        """
        config = self.config
        if config.nce_k == 0:
            return full_softmax_loss(embedding, self.memory_bank.vectors, indices,
                                     config.temperature)  # fmt: skip
        row_ids = self.memory_bank.sample_with_positive(indices, config.nce_k, generator)
        similarities = nce_similarities(embedding, self.memory_bank, row_ids)
        exp_similarities = torch.exp(similarities.float() / config.temperature)
        if float(self.nce_z) < 0:
            self._set_nce_z(exp_similarities)
        return nce_loss(exp_similarities / self.nce_z, self.num_samples)

    @torch.no_grad()
    def _set_nce_z(self, exp_similarities: torch.Tensor) -> None:
        """Z from the first batch, averaged over ranks so every rank uses the same constant."""
        self.nce_z.copy_(all_reduce_mean(nce_z_estimate(exp_similarities, self.num_samples)))

    def after_optimizer_step(self, ctx: StepContext) -> None:
        """``v_i ← normalize(m·v_i + (1−m)·f_i)`` for the global batch, view by view."""
        pending, self._pending = self._pending, []
        for indices, embedding in pending:
            self.memory_bank.update(indices, embedding)

    def encoder(self) -> torch.nn.Module:
        """The backbone (exported and evaluated)."""
        return self.online.backbone

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """The normalised 128-d NPID embedding (``--layer head``)."""
        return self.project(self.representation(images))

    def embedding_dim(self) -> int:
        """The dimension of :meth:`embed` (the bank rows, ``dim``)."""
        return int(self.config.dim)


def _check_config(config: NPID.Config) -> None:
    """Out-of-range hyper-parameters are bad input."""
    if config.dim < 1:
        raise BadInput(f"npid dim must be at least 1, got {config.dim}")
    if config.nce_k < 0:
        raise BadInput(f"npid nce_k must be 0 (full softmax) or a positive K, got {config.nce_k}")
    if config.temperature <= 0:
        raise BadInput(f"npid temperature must be positive, got {config.temperature}")
    if not 0.0 <= config.bank_momentum <= 1.0:
        raise BadInput(f"npid bank_momentum must be in [0, 1], got {config.bank_momentum}")
    if config.queries < 1:
        raise BadInput(f"npid queries must be at least 1, got {config.queries}")
    if config.head not in HEAD_KINDS:
        raise BadInput(f"unknown npid head '{config.head}': use one of {', '.join(HEAD_KINDS)}")
