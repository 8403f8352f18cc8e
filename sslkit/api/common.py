"""What several API functions share: a checkpoint's features of a data spec, and the frame
of the evaluations that train (``linear``, ``semisup``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sslkit.errors import BadInput


def checkpoint_features(checkpoint: str | Path, data: str, splits: Sequence[str], *,
                        layer: str = "backbone", arch: str | None = None,
                        cache_dir: str | Path | None = None, no_cache: bool = False,
                        batch_size: int = 256, download: bool = False,
                        skip_bad_images: bool = False, device: Any = "cpu",
                        normalized: bool = True, show_progress: bool = False,
                        encoder: str = "online",
                        recompute_bn: int = 0) -> tuple[Any, ...]:  # fmt: skip
    """The features of ``data``'s ``splits`` under ``checkpoint`` (through the feature
    cache), then the sources dict: ``(split_1, ..., split_n, sources)``. ``encoder`` and
    ``recompute_bn``: see :func:`sslkit.features.extract.load_feature_network`."""
    from sslkit.features.extract import load_feature_network
    from sslkit.features.service import split_features

    network = load_feature_network(str(checkpoint), layer, arch, encoder, recompute_bn, data)
    parts, sources = split_features(network, data, tuple(splits), device, cache_dir=cache_dir,
                                    use_cache=not no_cache, batch_size=batch_size,
                                    download=download, normalized=normalized,
                                    skip_bad_images=skip_bad_images,
                                    show_progress=show_progress)  # fmt: skip
    return (*parts, sources)


def baseline_features(checkpoint: str | Path, data: str, splits: Sequence[str], kind: str, *,
                      arch: str | None = None, cache_dir: str | Path | None = None,
                      no_cache: bool = False, batch_size: int = 256, download: bool = False,
                      skip_bad_images: bool = False, device: Any = "cpu",
                      normalized: bool = True, show_progress: bool = False,
                      recompute_bn: int = 0) -> tuple[Any, ...]:  # fmt: skip
    """Like :func:`checkpoint_features`, for a reference of ``checkpoint``'s encoder:
    ``kind`` is ``raw_pixels`` or ``random_init`` (its architecture untrained, its
    BatchNorm statistics recomputed on ``recompute_bn`` images as the encoder's are)."""
    from sslkit.features.extract import load_feature_network
    from sslkit.features.service import baseline_split_features

    trained = load_feature_network(str(checkpoint), "backbone", arch, "online", recompute_bn,
                                   data)  # fmt: skip
    parts, sources = baseline_split_features(trained, kind, data, tuple(splits), device,
                                             cache_dir=cache_dir, use_cache=not no_cache,
                                             batch_size=batch_size, download=download,
                                             normalized=normalized,
                                             skip_bad_images=skip_bad_images,
                                             show_progress=show_progress)  # fmt: skip
    return (*parts, sources)


def check_baselines(by_files: bool, layer: str) -> None:
    """``--baselines`` embeds the images of a data spec with the checkpoint's backbone."""
    if by_files:
        raise BadInput("--baselines embeds the images again (raw pixels, random init): give "
                       "--checkpoint and --data instead of feature files")  # fmt: skip
    if layer != "backbone":
        raise BadInput("--baselines compares backbone features: drop --layer head")


def need_labels(protocol: str, sets: Sequence[Any], paths: Sequence[str | Path]) -> list[str]:
    """Refuse a training or test feature set of another tool that has no labels (kNN and
    linear classification score against them); the notes on the sets' unknown provenance.

    ``sets`` are the training and test ``FeatureSet``s read from ``paths``.
    """
    from sslkit.features.store import is_foreign, provenance_note

    notes = []
    for split, data, path in zip(("train", "test"), sets, paths, strict=True):
        if not is_foreign(data):
            continue
        if not data.attrs["labelled"]:
            raise BadInput(f"{protocol} needs labels, but {path} has none: give --{split}-labels "
                           "FILE.npy (one integer per row) or store a 'labels' dataset")
        notes.append(provenance_note(path))
    return notes


def check_encoder_choice(by_files: bool, encoder: str, recompute_bn: int) -> None:
    """``--encoder`` and ``--recompute-bn`` choose how images are embedded: not for files."""
    if by_files and (encoder != "online" or recompute_bn):
        raise BadInput("--encoder and --recompute-bn choose how a checkpoint embeds images: "
                       "give --checkpoint and --data instead of feature files")  # fmt: skip


def run_evaluation(name: str, workdir: str | Path | None, state_file: str, resume: bool,
                   force: bool, device: str, run: Callable[[Any, Path | None], dict[str, Any]],
                   ) -> tuple[dict, bool]:  # fmt: skip
    """The frame shared by the training evaluations (``linear``, ``semisup``).

    Refuses to overwrite a workdir's state without ``resume``/``force``, joins the process
    group under torchrun, calls ``run(env, folder) -> dict``, adds the wall time, and on
    rank 0 writes ``WORKDIR/<name>.json``. Returns the output and whether this process is
    the main one.
    """
    from sslkit import distributed
    from sslkit.utils.jsonout import write_json

    started = time.perf_counter()
    folder = Path(workdir) if workdir else None
    if folder is not None and (folder / state_file).exists() and not (resume or force):
        raise BadInput(f"{folder} already holds a {name} run: pass --resume to continue it "
                       "or --force to start over")  # fmt: skip
    env = distributed.setup(device)
    try:
        output = run(env, folder)
    finally:
        distributed.teardown()
    output["seconds"] = round(time.perf_counter() - started, 3)
    if env.is_main and folder is not None:
        write_json(output, str(folder / f"{name}.json"))
    return output, env.is_main
