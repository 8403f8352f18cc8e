"""Prototype contrast (PCL's ProtoNCE term, HCSC's selective variant) on small tensors.

Shapes: ``b`` queries, ``k`` prototypes of dimension ``d``, ``K`` queue entries.
"""

from __future__ import annotations

import torch

from sslkit.nn.losses import first_is_target_loss, mask_negatives


def negative_prototype_ids(positives: torch.Tensor, num_prototypes: int) -> torch.Tensor:
    """Every prototype id in ``0..k-1`` that is not the positive of any query of the batch.

    (The authors' code uses ``range(max(assignment))``, dropping the highest id; see
    HCSC/PCL quirk 1. This is the corrected range.)
    """
    is_negative = torch.ones(num_prototypes, dtype=torch.bool, device=positives.device)
    is_negative[positives] = False
    return is_negative.nonzero().squeeze(1)


def prototype_loss(
    query: torch.Tensor,
    centroids: torch.Tensor,
    density: torch.Tensor,
    positives: torch.Tensor,
    negative_ids: torch.Tensor,
    negative_mask: torch.Tensor | None = None,
    mask_mode: str = "zero_logit",
) -> torch.Tensor:
    """Prototype InfoNCE, row i = ``[q_i·c_pos(i) / phi_pos(i), (q_i·c_n)·mask / phi_n ...]``.

    Args:
        query: ``b x d`` unit rows (with gradient).
        centroids: ``k x d`` unit rows; ``density``: ``k`` concentrations phi.
        positives: ``b`` prototype id of every query.
        negative_ids: ``n`` prototype ids used as negatives by every row.
        negative_mask: optional ``b x n`` 0/1 selection (HCSC prototype selection).
    """
    # index_select, not advanced indexing: several times faster on the CPU
    similarities = query @ centroids.t()
    positive = similarities.gather(1, positives[:, None]) / density[positives][:, None]
    negative = similarities.index_select(1, negative_ids)
    negative = mask_negatives(negative, negative_mask, mask_mode)
    negative = negative / density.index_select(0, negative_ids)[None, :]
    return first_is_target_loss(torch.cat([positive, negative], dim=1))


def log_normalizer(keys: torch.Tensor, centroids: torch.Tensor, density: torch.Tensor,
                   chunk: int = 4096) -> torch.Tensor:  # fmt: skip
    """``log Σ_c exp(key·c / phi_c)`` for every key: the denominator of its soft assignment.

    A queue entry's value changes only when the entry is enqueued or the clustering
    changes, so HCSC caches it instead of recomputing a queue x prototypes softmax per step.
    """
    scale = 1.0 / density.clamp_min(1e-3)
    parts = [torch.logsumexp((rows @ centroids.t()) * scale, dim=1) for rows in keys.split(chunk)]
    return torch.cat(parts) if parts else keys.new_zeros(0)


def instance_keep_probability(
    queue: torch.Tensor,
    queue_log_normalizer: torch.Tensor,
    centroids: torch.Tensor,
    density: torch.Tensor,
    positives: torch.Tensor,
) -> torch.Tensor:
    """HCSC's instance selection: ``p(i, j) = 1 − A[j, pos(i)]``, clamped to [0, 0.999].

    ``A[j, c] = softmax_c(Q_j·c / max(phi_c, 1e-3))`` is queue entry j's soft assignment;
    only the columns of the batch positives are needed, ``b x K`` in all.
    """
    phi = density.clamp_min(1e-3).index_select(0, positives)
    scaled_centroids = centroids.index_select(0, positives) / phi[:, None]
    assignment = (scaled_centroids @ queue.t()).sub_(queue_log_normalizer[None, :]).exp_()
    return assignment.neg_().add_(1.0).clamp_(0.0, 0.999)  # in place: b x K, every step


def parent_keep_table(child_parent_similarity: torch.Tensor,
                      parent_density: torch.Tensor) -> torch.Tensor:  # fmt: skip
    """``1 − softmax_parent(sim(child, parent) / phi_parent)``: ``k_l x k_{l+1}``, per epoch.

    Entry ``[c, P]`` is the probability of keeping prototype c as a negative for a query
    whose positive's parent is P (HCSC prototype selection, before clamping).
    """
    return 1.0 - torch.softmax(child_parent_similarity / parent_density[None, :], dim=1)


def prototype_keep_probability(
    keep_table: torch.Tensor, negative_ids: torch.Tensor, query_parents: torch.Tensor
) -> torch.Tensor:
    """``b x n`` keep probabilities of the negatives for each query, clamped to [1e-4, 0.999]."""
    # columns first (``keep_table[negative_ids]`` would copy a k_l x k_{l+1} table per step)
    keep = keep_table.index_select(1, query_parents).index_select(0, negative_ids)
    return keep.t().clamp(1e-4, 0.999)


def bernoulli_mask(keep: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """A 0/1 mask with ``P(1) = keep`` elementwise: ``u < keep`` for uniform u in [0, 1).

    Same distribution as ``torch.bernoulli(keep)``, which on the CPU is ~2.5x slower for
    a tensor of probabilities (HCSC draws 3 x b x K of them every step).
    """
    uniform = torch.rand(keep.shape, generator=generator, device=keep.device, dtype=keep.dtype)
    return (uniform < keep).to(keep.dtype)
