"""``sslkit knn``: weighted kNN accuracy from feature files or a checkpoint."""

from __future__ import annotations

import click

from sslkit.commands.common import (
    debug_option,
    device_option,
    json_option,
    report_skipped,
    skip_bad_images_option,
)


def parse_ks(_ctx, _param, value: str) -> list[int]:
    """``"10,20,100,200"`` -> ``[10, 20, 100, 200]``."""
    try:
        ks = [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        ks = []
    if not ks or min(ks) <= 0:
        raise click.BadParameter("use comma-separated positive integers, e.g. 10,20,100,200")
    return ks


@click.command()
@click.option("--train", "train_path", type=click.Path(dir_okay=False), default=None,
              help="Feature file of the bank (training split).")
@click.option("--test", "test_path", type=click.Path(dir_okay=False), default=None,
              help="Feature file of the queries (test split).")
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None,
              help="Instead of feature files: a checkpoint ...")
@click.option("--data", "data_spec", default=None, metavar="SPEC",
              help="... and a data spec (its train and test splits are embedded and cached; "
                   "e.g. cifar10-lt:ROOT or digits~lt10 for a long-tailed train split).")
@click.option("--layer", type=click.Choice(["backbone", "head"]), default="backbone",
              show_default=True)
@click.option("--arch", default=None, help="Backbone arch if the checkpoint does not say.")
@click.option("--k", "ks", default="10,20,100,200", show_default=True, callback=parse_ks,
              help="Numbers of neighbours, comma-separated.")
@click.option("--temperature", type=click.FloatRange(min=0, min_open=True), default=0.07,
              show_default=True, help="Vote weight exp(similarity / temperature).")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
              help="Feature cache folder (default $SSLKIT_CACHE or ~/.cache/sslkit).")
@click.option("--no-cache", is_flag=True, help="Always re-extract (and do not store).")
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--download", is_flag=True, help="Allow downloading Fashion-MNIST if missing.")
@skip_bad_images_option
@click.option("--unsupervised-score", is_flag=True,
              help="Also CLD's label-free score NMI(f,f')*R(f,f') on two augmented views of "
                   "training images (needs --checkpoint and --data).")
@click.option("--score-images", type=click.IntRange(min=2), default=10000, show_default=True,
              help="Training images (seeded sample) for --unsupervised-score.")
@click.option("--score-clusters", type=click.IntRange(min=2), default=None,
              help="k of the two views' k-means (default: the dataset's number of classes).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the --unsupervised-score sample and augmentations.")
@device_option
@json_option
@debug_option
def knn(train_path, test_path, checkpoint, data_spec, layer, arch, ks, temperature, cache_dir,
        no_cache, batch_size, download, skip_bad_images, unsupervised_score, score_images,
        score_clusters, seed, device, json_path) -> None:  # fmt: skip
    """Weighted kNN classification (cosine similarity, exp(s/T) votes), top-1 and top-5.

    When the training split is long-tailed (largest class >= 2x the smallest), the
    many- (>100 training images), medium- (20-100) and few-shot (<20) classes' top-1 at
    the best k is added ("shot_groups" in the JSON).

    \b
    Examples:
      sslkit knn --train train.h5 --test test.h5
      sslkit knn --checkpoint runs/moco-digits/checkpoint.pt --data digits --json -
      sslkit knn --checkpoint ckpt.pt --data fashion-mnist --unsupervised-score
      sslkit knn --checkpoint ckpt.pt --data cifar10-lt:/data/cifar --k 200
    """
    import time

    from sslkit.distributed import choose_device
    from sslkit.errors import BadInput
    from sslkit.eval.knn import cached_knn_classify, knn_classify
    from sslkit.utils.jsonout import write_json

    by_files = train_path is not None or test_path is not None
    by_checkpoint = checkpoint is not None or data_spec is not None
    if by_files == by_checkpoint:
        raise BadInput("give either --train and --test feature files, or --checkpoint and --data")
    started = time.perf_counter()
    torch_device = choose_device(device)
    if unsupervised_score and by_files:
        raise BadInput("--unsupervised-score embeds augmented images: give --checkpoint and "
                       "--data instead of feature files")  # fmt: skip
    if by_files:
        if not (train_path and test_path):
            raise BadInput("both --train and --test feature files are needed")
        from sslkit.features.store import open_feature_pair

        # the bank stays on disk and is read block by block (files larger than memory)
        with open_feature_pair(train_path, test_path) as (train, test, sources):
            result = knn_classify(train.features, train.labels, test.features, test.labels, ks,
                                  temperature, torch_device)  # fmt: skip
        neighbours_hit = False
    else:
        if not (checkpoint and data_spec):
            raise BadInput("both --checkpoint and --data are needed")
        train, test, sources = _from_checkpoint(checkpoint, data_spec, layer, arch, cache_dir,
                                                no_cache, batch_size, download, torch_device,
                                                skip_bad_images)  # fmt: skip
        for split in ("train", "test"):
            report_skipped(sources[split]["skipped_images"])
        cache_files = [sources[split].get("cache_file") for split in ("train", "test")]
        if None in cache_files:
            result = knn_classify(train.features, train.labels, test.features, test.labels, ks,
                                  temperature, torch_device)  # fmt: skip
            neighbours_hit = False
        else:
            result, neighbours_hit = cached_knn_classify(train, test, *cache_files, ks,
                                                         temperature, torch_device)  # fmt: skip
    output = {**result.as_dict(), "inputs": sources, "neighbours_cache_hit": neighbours_hit}
    shots = _shot_groups(result, train.labels, test.labels)
    if shots is not None:
        output["shot_groups"] = shots
    score = None
    if unsupervised_score:
        score = _unsupervised(checkpoint, data_spec, layer, arch, score_images, score_clusters,
                              seed, batch_size, download, torch_device,
                              skip_bad_images)  # fmt: skip
        output["unsupervised_score"] = {**score.as_dict(), "seed": seed}
    output["seconds"] = round(time.perf_counter() - started, 3)
    _print(result, json_path)
    if shots is not None:
        _print_shots(shots, json_path)
    if score is not None:
        _print_score(score, json_path)
    write_json(output, json_path)


def _from_checkpoint(checkpoint, spec, layer, arch, cache_dir, no_cache, batch_size, download,
                     device, skip_bad_images):  # fmt: skip
    from sslkit.features.extract import load_feature_network
    from sslkit.features.service import split_features

    network = load_feature_network(checkpoint, layer, arch)
    (train, test), sources = split_features(network, spec, ("train", "test"), device,
                                            cache_dir=cache_dir, use_cache=not no_cache,
                                            batch_size=batch_size, download=download,
                                            skip_bad_images=skip_bad_images)  # fmt: skip
    return train, test, sources


def _unsupervised(checkpoint, spec, layer, arch, images, clusters, seed, batch_size, download,
                  device, skip_bad_images):  # fmt: skip
    """CLD's NMI * R on two views drawn with the checkpoint's training augmentation."""
    from sslkit.data.views import view_spec_from_config
    from sslkit.errors import BadInput
    from sslkit.eval.unsupervised import two_view_features, unsupervised_score
    from sslkit.features.extract import load_feature_network
    from sslkit.features.service import load_dataset
    from sslkit.methods.base import COMMON_AUGMENT

    network = load_feature_network(checkpoint, layer, arch)
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


def _print_shots(shots: dict, json_path) -> None:
    from sslkit.commands.common import print_table
    from sslkit.eval.longtail import shot_table

    columns, rows = shot_table(shots)
    print_table(f"long tail: many / medium / few-shot top-1 at k={shots['k']}", columns, rows,
                to_stderr=json_path == "-")  # fmt: skip


def _print_score(score, json_path) -> None:
    from sslkit.commands.common import print_table

    rows = [["NMI(f, f')", f"{score.nmi:.4f}"], ["R(f, f')", f"{score.retrieval:.4f}"],
            ["NMI x R", f"{score.score:.4f}"]]  # fmt: skip
    print_table(f"Unsupervised score ({score.images} images, k={score.clusters})",
                ["", "value"], rows, to_stderr=json_path == "-")  # fmt: skip


def _print(result, json_path) -> None:
    from sslkit.commands.common import print_table

    rows = [[k, result.top1[k], result.top5[k]] for k in sorted(result.top1)]
    title = (f"kNN (T={result.temperature}, {result.train_size} train / "
             f"{result.test_size} test) best top-1 {result.top1[result.best_k]:.2f} "
             f"at k={result.best_k}")  # fmt: skip
    print_table(title, ["k", "top-1 %", "top-5 %"], rows, to_stderr=json_path == "-")
