"""How well clusters match labels: AMI and NMI (PCL / HCSC's clustering evaluation), purity."""

from __future__ import annotations

import numpy as np


def cluster_agreement(assignments: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """``{"ami", "nmi", "purity"}`` of cluster ``assignments`` against class ``labels``.

    Purity is the fraction of points whose cluster's majority class is their own class.
    """
    from sklearn.metrics import adjusted_mutual_info_score, normalized_mutual_info_score

    assignments = np.asarray(assignments, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    _, label_ids = np.unique(labels, return_inverse=True)
    _, cluster_ids = np.unique(assignments, return_inverse=True)
    table = np.zeros((cluster_ids.max() + 1, label_ids.max() + 1), dtype=np.int64)
    np.add.at(table, (cluster_ids, label_ids), 1)
    return {
        "ami": float(adjusted_mutual_info_score(labels, assignments)),
        "nmi": float(normalized_mutual_info_score(labels, assignments)),
        "purity": float(table.max(axis=1).sum() / len(labels)),
    }
