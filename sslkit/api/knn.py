"""``sslkit.knn``: weighted kNN classification from feature files or a checkpoint.

:func:`knn` gets the features (two files, or a checkpoint's embedding of a data spec's
splits through the feature cache) and hands them to :func:`knn_on_features`, which runs
the protocol on any pair of labelled feature sets: other features (raw pixels, a
randomly initialised network) are scored the same way by calling it directly.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sslkit.api.common import (
    baseline_features,
    check_baselines,
    check_encoder_choice,
    checkpoint_features,
    need_labels,
)
from sslkit.api.results import KnnResult
from sslkit.errors import BadInput

DEFAULT_KS = (10, 20, 100, 200)


def knn(*, train_features: str | Path | None = None, test_features: str | Path | None = None,
        train_labels: str | Path | None = None, test_labels: str | Path | None = None,
        checkpoint: str | Path | None = None, data: str | None = None,
        layer: str = "backbone", arch: str | None = None, k: Sequence[int] = DEFAULT_KS,
        temperature: float = 0.07, cache_dir: str | Path | None = None, no_cache: bool = False,
        batch_size: int = 256, download: bool = False, skip_bad_images: bool = False,
        unsupervised_score: bool = False, score_images: int = 10000,
        score_clusters: int | None = None, seed: int = 0, baselines: bool = False,
        encoder: str = "online", recompute_bn: int = 0, no_progress: bool = False,
        device: str = "auto") -> KnnResult:  # fmt: skip
    """Weighted kNN top-1 / top-5 (in %) of the test split against the training split.

    Give either ``train_features`` and ``test_features`` files (the bank stays on disk,
    read block by block), or ``checkpoint`` and ``data`` (both splits embedded and cached).
    The files are sslkit feature files, or features of another tool: HDF5 files with a
    ``features`` dataset (and ``labels``), or ``.npy`` arrays whose labels come from the
    ``.npy`` files ``train_labels`` and ``test_labels``; a note in ``notes`` says their
    provenance is unknown.
    Every query's ``k`` nearest training features (cosine) vote ``exp(s / temperature)``;
    a k above the number of training images votes with all of them (``notes`` says so).
    On a long-tailed training split the many / medium / few-shot top-1 is added;
    ``unsupervised_score`` adds CLD's label-free NMI x R (checkpoint and data only).
    ``baselines`` adds the same protocol on the raw pixels and on the checkpoint's
    architecture at its random initialisation (``baselines.raw_pixels`` and
    ``baselines.random_init``, each with the main result's fields; checkpoint and data
    only). ``encoder="momentum"`` scores the momentum encoder's backbone; ``recompute_bn=N``
    recomputes the BatchNorm statistics on N clean training images first (both for
    checkpoint and data; the defaults are the papers' protocol). Every score is in %
    (``score_unit``).

    Example::

        sslkit.knn(checkpoint="runs/moco/checkpoint.pt", data="digits", k=[20, 200]).best
    """
    from sslkit.distributed import choose_device

    started = time.perf_counter()
    by_files = train_features is not None or test_features is not None
    if by_files == (checkpoint is not None or data is not None):
        raise BadInput("give either --train-features and --test-features, or --checkpoint and "
                       "--data")  # fmt: skip
    if (train_labels is not None or test_labels is not None) and not by_files:
        raise BadInput("--train-labels and --test-labels label feature files of another tool: "
                       "give them with --train-features and --test-features")  # fmt: skip
    if unsupervised_score and by_files:
        raise BadInput("--unsupervised-score embeds augmented images: give --checkpoint and "
                       "--data instead of feature files")  # fmt: skip
    check_encoder_choice(by_files, encoder, recompute_bn)
    if baselines:
        check_baselines(by_files, layer)
    torch_device = choose_device(device)
    if by_files:
        if not (train_features and test_features):
            raise BadInput("both --train-features and --test-features are needed")
        from sslkit.features.store import open_any_feature_pair

        # the bank stays on disk and is read block by block (files larger than memory)
        with open_any_feature_pair(train_features, test_features, train_labels,
                                   test_labels) as (train_set, test_set, sources):  # fmt: skip
            notes = need_labels("kNN", (train_set, test_set), (train_features, test_features))
            output = knn_on_features(train_set, test_set, k, temperature, torch_device)
        output["notes"] = notes + output["notes"]
        output["inputs"] = sources
    else:
        if not (checkpoint and data):
            raise BadInput("both --checkpoint and --data are needed")
        train_set, test_set, sources = checkpoint_features(
            checkpoint, data, ("train", "test"), layer=layer, arch=arch, cache_dir=cache_dir,
            no_cache=no_cache, batch_size=batch_size, download=download,
            skip_bad_images=skip_bad_images, device=torch_device, show_progress=not no_progress,
            encoder=encoder, recompute_bn=recompute_bn)
        output = knn_on_features(train_set, test_set, k, temperature, torch_device,
                                 cache_files=[sources[s].get("cache_file")
                                              for s in ("train", "test")])  # fmt: skip
        output["inputs"] = sources
        if unsupervised_score:
            score = _unsupervised(checkpoint, data, layer, arch, score_images, score_clusters,
                                  seed, batch_size, download, torch_device,
                                  skip_bad_images)  # fmt: skip
            output["unsupervised_score"] = {**score.as_dict(), "seed": seed}
        if baselines:
            output["baselines"] = {
                kind: _baseline(kind, checkpoint, data, arch, k, temperature, cache_dir,
                                no_cache, batch_size, download, skip_bad_images, torch_device,
                                not no_progress, recompute_bn)
                for kind in ("raw_pixels", "random_init")}  # fmt: skip
    output["score_unit"] = "percent"
    output["seconds"] = round(time.perf_counter() - started, 3)
    return KnnResult(output)


def knn_on_features(train, test, k: Sequence[int] = DEFAULT_KS, temperature: float = 0.07,
                    device: Any = "cpu",
                    cache_files: Sequence[str | None] | None = None) -> dict[str, Any]:  # fmt: skip
    """The kNN protocol on two labelled feature sets (``FeatureSet``-like: ``features``,
    ``labels``); the JSON body without ``inputs``.

    ``cache_files`` are the feature-cache files the sets came from (when both are given,
    the neighbour search is stored beside them and reused by later calls).
    """
    from sslkit.eval import knn as protocol

    if cache_files is not None and None not in cache_files:
        result, hit = protocol.cached_knn_classify(train, test, *cache_files, k, temperature,
                                                   device)  # fmt: skip
    else:
        result = protocol.knn_classify(train.features, train.labels, test.features,
                                       test.labels, k, temperature, device)  # fmt: skip
        hit = False
    output = {**result.as_dict(), "neighbours_cache_hit": hit,
              "notes": [f"k={k} is more than the {result.train_size} training images: it "
                        f"votes with all {result.train_size}" for k in result.capped()]}
    shots = _shot_groups(result, train.labels, test.labels)
    if shots is not None:
        output["shot_groups"] = shots
    return output


def _baseline(kind, checkpoint, data, arch, k, temperature, cache_dir, no_cache, batch_size,
              download, skip_bad_images, device, show_progress,
              recompute_bn) -> dict[str, Any]:  # fmt: skip
    """The kNN protocol on a reference's features of both splits (cached, as the encoder's)."""
    train_set, test_set, sources = baseline_features(
        checkpoint, data, ("train", "test"), kind, arch=arch, cache_dir=cache_dir,
        no_cache=no_cache, batch_size=batch_size, download=download,
        skip_bad_images=skip_bad_images, device=device, show_progress=show_progress,
        recompute_bn=recompute_bn)
    output = knn_on_features(train_set, test_set, k, temperature, device,
                             cache_files=[sources[s].get("cache_file")
                                          for s in ("train", "test")])  # fmt: skip
    output["inputs"] = sources
    output["score_unit"] = "percent"
    return output


def _unsupervised(checkpoint, spec, layer, arch, images, clusters, seed, batch_size, download,
                  device, skip_bad_images):  # fmt: skip
    """CLD's NMI * R on two views drawn with the checkpoint's training augmentation."""
    from sslkit.data.views import view_spec_from_config
    from sslkit.eval.unsupervised import two_view_features, unsupervised_score
    from sslkit.features.extract import load_feature_network
    from sslkit.features.service import load_dataset
    from sslkit.methods.base import COMMON_AUGMENT

    network = load_feature_network(str(checkpoint), layer, arch)
    dataset = load_dataset(spec, "train", network, download, skip_bad_images)
    augment = {**COMMON_AUGMENT, **((network.encoder.config or {}).get("augment") or {})}
    views = view_spec_from_config(augment, dataset.info, count=2)
    first, second = two_view_features(network.network.to(device), dataset, views, device,
                                      images, seed, batch_size)  # fmt: skip
    clusters = clusters or dataset.info.num_classes
    if clusters < 2:
        raise BadInput(f"{spec} does not say how many classes it has: pass --score-clusters K")
    return unsupervised_score(first, second, clusters, seed)


def _shot_groups(result, train_labels, test_labels) -> dict | None:
    """Many/medium/few-shot top-1 at the best k, when the training split is long-tailed."""
    from sslkit.eval.longtail import is_long_tailed, shot_accuracy

    if result.predictions is None or not is_long_tailed(train_labels, test_labels):
        return None
    best = result.best_k
    return {"k": best, **shot_accuracy(train_labels, result.predictions[best], test_labels)}
