"""Contrastive losses shared by the methods."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def info_nce(
    query: torch.Tensor,
    positive_key: torch.Tensor,
    negatives: torch.Tensor,
    temperature: float,
    negative_mask: torch.Tensor | None = None,
    mask_mode: str = "zero_logit",
) -> torch.Tensor:
    """InfoNCE with one positive per query and a shared bank of negatives (MoCo, He et al. 2020).

    ``L = mean_i −log( exp(q_i·k_i/T) / (exp(q_i·k_i/T) + Σ_j exp(q_i·n_j/T)) )``

    Args:
        query: ``B x D`` (unit rows, with gradient).
        positive_key: ``B x D`` (unit rows, detached by the caller).
        negatives: ``K x D`` (unit rows, detached), e.g. the queue before this step's push.
        temperature: T.
        negative_mask: optional ``B x K`` of 0/1 (HCSC's selection); see :func:`mask_negatives`.
        mask_mode: ``"zero_logit"`` or ``"exclude"`` (see :func:`mask_negatives`).
    Returns:
        The scalar mean loss. Logits have shape ``B x (1 + K)`` with the positive at 0.
    """
    positive = (query * positive_key).sum(dim=1, keepdim=True)
    negative = mask_negatives(query @ negatives.t(), negative_mask, mask_mode)
    return first_is_target_loss(torch.cat([positive, negative], dim=1) / temperature)


MASK_MODES = ("zero_logit", "exclude")


def mask_negatives(
    similarities: torch.Tensor, mask: torch.Tensor | None, mode: str = "zero_logit"
) -> torch.Tensor:
    """Apply a 0/1 selection mask to negative similarities (HCSC).

    ``zero_logit`` (the authors' code) multiplies: a de-selected negative becomes a logit
    of 0 and still adds exp(0) to the softmax denominator. ``exclude`` sets it to −inf, so
    it leaves the softmax (the semantically intended removal).
    """
    if mask is None:
        return similarities
    if mode == "zero_logit":
        return similarities * mask
    if mode == "exclude":
        return similarities.masked_fill(mask == 0, float("-inf"))
    raise ValueError(f"mask_mode must be one of {MASK_MODES}, got {mode!r}")


def first_is_target_loss(logits: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of ``B x (1 + N)`` logits whose column 0 is every row's target."""
    target = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
    return F.cross_entropy(logits, target)
