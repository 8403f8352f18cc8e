"""Extraction straight to HDF5, one batch at a time: no rank ever holds N x D features.

One process writes each batch into the output file as it is embedded. Under torchrun
every rank embeds its contiguous share (``extraction_batches``) into its own temporary
shard next to the output; after a barrier rank 0 copies the shards, in rank order and in
chunks, into the output file, which then appears atomically. Rows are in dataset order
whatever the number of processes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from sslkit.data.base import ImageDataset
from sslkit.data.loader import extraction_batches, extraction_bounds
from sslkit.distributed import DistEnv, barrier
from sslkit.features.extract import FeatureNetwork, embedded_batches, labels_and_indices
from sslkit.features.service import eval_transform_for, feature_module, provenance_of
from sslkit.features.store import FeatureWriter, chunk_rows
from sslkit.utils.atomic import TMP_MARKER


def write_dataset_features(
    network: FeatureNetwork,
    dataset: ImageDataset,
    env: DistEnv,
    out: Path,
    *,
    batch_size: int = 256,
    num_workers: int = 0,
    half: bool = False,
    normalized: bool = True,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Embed ``dataset`` into the feature file ``out``; return its rows, dim and provenance.

    Every rank must call it. Peak memory is one batch of features (plus, on rank 0, one
    chunk of a shard being copied), whatever N.
    """
    out = Path(out)
    transform = eval_transform_for(network, dataset)
    module = feature_module(network, env.device)
    provenance = provenance_of(network, dataset, transform, normalized)
    labels, indices = labels_and_indices(dataset)
    batches = extraction_batches(len(dataset), batch_size, env.rank, env.world_size)
    blocks = embedded_batches(module, dataset, transform, env.device, batches, num_workers,
                              normalize_rows=normalized)  # fmt: skip
    if env.world_size == 1:
        with FeatureWriter(out, labels, indices, provenance, half) as writer:
            for positions, features in blocks:
                writer.write(int(positions[0]), features.cpu().numpy())
                if progress is not None:
                    progress(len(positions))
        return {"rows": len(labels), "dim": writer.dim, "attrs": provenance}
    shard = _shard_path(out, env.rank)
    dim = 0
    try:
        _write_shard(shard, blocks, half, progress)
        barrier()
        if env.is_main:
            with FeatureWriter(out, labels, indices, provenance, half) as writer:
                _copy_shards(writer, out, env.world_size, len(dataset), batch_size)
            dim = writer.dim
        barrier()
    finally:
        with contextlib.suppress(FileNotFoundError):
            shard.unlink()
    return {"rows": len(labels), "dim": dim, "attrs": provenance}


def _write_shard(path: Path, blocks, half: bool,
                 progress: Callable[[int], None] | None) -> None:  # fmt: skip
    """This rank's features, appended batch by batch to a resizable dataset."""
    import h5py

    dtype = np.float16 if half else np.float32
    dim = None
    with h5py.File(path, "w") as handle:
        for _, features in blocks:
            block = features.cpu().numpy().astype(dtype)
            if dim is None:
                dim = block.shape[1]
                handle.create_dataset("features", shape=(0, dim), maxshape=(None, dim),
                                      dtype=dtype, chunks=(chunk_rows(dim, block.itemsize), dim))
            data = handle["features"]
            start = data.shape[0]
            data.resize(start + len(block), axis=0)
            data[start:] = block
            if progress is not None:
                progress(len(block))


def _copy_shards(writer: FeatureWriter, out: Path, world_size: int, size: int,
                 batch_size: int) -> None:  # fmt: skip
    """Rank 0: every rank's shard into its rows of the output, a chunk at a time."""
    import h5py

    bounds = extraction_bounds(size, world_size)
    for rank in range(world_size):
        with h5py.File(_shard_path(out, rank), "r") as handle:
            if "features" not in handle:
                continue
            data = handle["features"]
            if data.shape[0] != bounds[rank + 1] - bounds[rank]:
                raise RuntimeError(f"shard {rank} holds {data.shape[0]} rows, expected "
                                   f"{bounds[rank + 1] - bounds[rank]}")  # fmt: skip
            step = max(batch_size, chunk_rows(data.shape[1], data.dtype.itemsize))
            for start in range(0, data.shape[0], step):
                writer.write(int(bounds[rank]) + start, data[start : start + step])


def _shard_path(out: Path, rank: int) -> Path:
    """Rank ``rank``'s temporary shard beside ``out`` (a temp name: cleaned up if left)."""
    return out.with_name(f"{TMP_MARKER}{out.name}.shard{rank}.h5")
