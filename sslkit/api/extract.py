"""``sslkit.extract``: embed every image of a split and write an HDF5 feature file."""

from __future__ import annotations

from pathlib import Path

from sslkit.api.results import ExtractResult
from sslkit.errors import BadInput


def extract(checkpoint: str | Path, data: str, out: str | Path, *, split: str = "train",
            layer: str = "backbone", arch: str | None = None, batch_size: int = 256,
            num_workers: int = 0, half: bool = False, force: bool = False,
            download: bool = False, skip_bad_images: bool = False, encoder: str = "online",
            recompute_bn: int = 0, no_progress: bool = False,
            device: str = "auto") -> ExtractResult:  # fmt: skip
    """Write the features of ``data``'s ``split`` under ``checkpoint`` to ``out`` (HDF5).

    ``layer`` is ``backbone`` (the pooled backbone feature) or ``head`` (the method's
    embedding). Features stream to the file batch by batch; under ``torchrun`` every
    process embeds its share and rank 0 assembles the file in dataset order. An existing
    ``out`` is replaced only with ``force=True``. ``encoder="momentum"`` embeds with the
    momentum encoder's backbone; ``recompute_bn=N`` first recomputes the BatchNorm
    statistics on N clean training images of ``data`` (both recorded in the file).

    Example::

        sslkit.extract("runs/moco/checkpoint.pt", "digits", "train.h5", split="train")
    """
    from sslkit import distributed
    from sslkit.features.extract import load_feature_network
    from sslkit.features.service import load_dataset
    from sslkit.features.streaming import write_dataset_features
    from sslkit.utils.progress import progress

    out = Path(out)
    if out.exists() and not force:
        raise BadInput(f"{out} exists: pass --force to overwrite it")
    network = load_feature_network(str(checkpoint), layer, arch, encoder, recompute_bn, data)
    dataset = load_dataset(data, split, network, download, skip_bad_images)
    env = distributed.setup(device)
    share = -(-len(dataset) // env.world_size)  # the images of one process, about
    try:
        with progress(f"extract {dataset.spec} {split}", share,
                      enabled=env.is_main and not no_progress) as shown:  # fmt: skip
            written = write_dataset_features(
                network, dataset, env, out, batch_size=batch_size, num_workers=num_workers,
                half=half, progress=lambda n: shown.update(advance=n, images=n))
    finally:
        distributed.teardown()
    return ExtractResult({"out": str(out), "rows": written["rows"], "dim": written["dim"],
                          "skipped_images": list(dataset.skipped_images),
                          "processes": env.world_size, **written["attrs"]},
                         main_process=env.is_main)  # fmt: skip
