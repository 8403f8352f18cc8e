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
) -> torch.Tensor:
    """InfoNCE with one positive per query and a shared bank of negatives (MoCo, He et al. 2020).

    ``L = mean_i −log( exp(q_i·k_i/T) / (exp(q_i·k_i/T) + Σ_j exp(q_i·n_j/T)) )``

    Args:
        query: ``B x D`` (unit rows, with gradient).
        positive_key: ``B x D`` (unit rows, detached by the caller).
        negatives: ``K x D`` (unit rows, detached), e.g. the queue before this step's push.
        temperature: T.
        negative_mask: optional ``B x K``; a zero multiplies the similarity (HCSC's
            ``zero_logit`` selection), the logit then counts as exp(0).
    Returns:
        The scalar mean loss. Logits have shape ``B x (1 + K)`` with the positive at 0.
    """
    positive = (query * positive_key).sum(dim=1, keepdim=True)
    negative = query @ negatives.t()
    if negative_mask is not None:
        negative = negative * negative_mask
    logits = torch.cat([positive, negative], dim=1) / temperature
    target = torch.zeros(query.shape[0], dtype=torch.long, device=query.device)
    return F.cross_entropy(logits, target)
