"""Clustering files (HDF5): one group per level, readable with plain h5py.

Layout::

    /level_0/assignments   N int64     cluster of every point (row order of the features)
    /level_0/centroids     k x D f32   unit-norm centroids
    /level_0/density       k f32       concentration phi (mean = temperature)
    /level_0/parents       k int64     cluster one level up (hierarchical, not the top level)
    /indices               N int64     dataset index of every point (from the feature file)
    attrs: format, levels, hierarchical, device, provenance of the features and settings
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sslkit.clustering.kmeans import Clustering, ClusterLevel
from sslkit.errors import BadInput
from sslkit.utils.atomic import atomic_path

FORMAT_TAG = "sslkit-clusters-v1"


def write_clusters(path: str | Path, clustering: Clustering, indices: np.ndarray,
                   attrs: dict[str, Any]) -> None:  # fmt: skip
    """Write ``clustering`` atomically (temp file, then rename)."""
    import h5py

    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as handle:
            handle.create_dataset("indices", data=np.asarray(indices, dtype=np.int64))
            for depth, level in enumerate(clustering.levels):
                group = handle.create_group(f"level_{depth}")
                group.create_dataset("assignments", data=level.assignments.astype(np.int64))
                group.create_dataset("centroids", data=level.centroids.astype(np.float32))
                group.create_dataset("density", data=level.density.astype(np.float32))
                if level.parents is not None:
                    group.create_dataset("parents", data=level.parents.astype(np.int64))
            for key, value in attrs.items():
                handle.attrs[key] = "" if value is None else value
            # written last: a caller's attribute can never shadow the layout
            handle.attrs["format"] = FORMAT_TAG
            handle.attrs["levels"] = len(clustering.levels)
            handle.attrs["hierarchical"] = clustering.hierarchical
            handle.attrs["device"] = clustering.device


def read_clusters(path: str | Path) -> tuple[Clustering, np.ndarray]:
    """Read a clustering file -> ``(clustering, indices)``; a foreign file is bad input."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise BadInput(f"clustering file {path} not found: create it with 'sslkit cluster'")
    try:
        with h5py.File(path, "r") as handle:
            if handle.attrs.get("format") != FORMAT_TAG:
                raise BadInput(f"{path} is not an sslkit clustering file: "
                               "create it with 'sslkit cluster'")  # fmt: skip
            levels = []
            for depth in range(int(handle.attrs["levels"])):
                group = handle[f"level_{depth}"]
                parents = group["parents"][()] if "parents" in group else None
                levels.append(ClusterLevel(group["centroids"][()], group["density"][()],
                                           group["assignments"][()], parents))  # fmt: skip
            clustering = Clustering(levels, bool(handle.attrs["hierarchical"]),
                                    str(handle.attrs["device"]))  # fmt: skip
            indices = handle["indices"][()]
    except (OSError, KeyError) as exc:
        raise BadInput(f"cannot read clustering file {path} ({exc}): corrupt file") from exc
    return clustering, indices
