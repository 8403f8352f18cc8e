"""``sslkit knn``: weighted kNN accuracy from feature files or a checkpoint."""

from __future__ import annotations

import click

from sslkit.commands.common import (
    CommaList,
    debug_option,
    device_option,
    encoder_option,
    json_option,
    no_progress_option,
    print_baselines,
    print_table,
    recompute_bn_option,
    renamed,
    report_skipped,
    shot_table,
    skip_bad_images_option,
    test_labels_option,
    train_labels_option,
)
from sslkit.utils.jsonout import write_json


@click.command()
@click.option("--train-features", type=click.Path(dir_okay=False), default=None,
              metavar="FILE", help="Features of the bank (training split): an sslkit feature "
                                   "file, another tool's HDF5 file with a 'features' dataset "
                                   "(and 'labels'), or a .npy array (N x D).")
@click.option("--test-features", type=click.Path(dir_okay=False), default=None,
              metavar="FILE", help="Features of the queries (test split), in the same forms.")
@train_labels_option
@test_labels_option
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None,
              help="Instead of feature files: a checkpoint ...")
@click.option("--data", default=None, metavar="SPEC",
              help="... and a data spec (its train and test splits are embedded and cached; "
                   "e.g. cifar10-lt:ROOT or digits~lt10 for a long-tailed train split).")
@click.option("--layer", type=click.Choice(["backbone", "head"]), default="backbone",
              show_default=True)
@click.option("--arch", default=None, help="Backbone arch if the checkpoint does not say.")
@click.option("--k", default="10,20,100,200", show_default=True,
              type=CommaList(int, example="10,20,100,200"),
              help="Numbers of neighbours, comma-separated (above the training images: all).")
@click.option("--temperature", type=click.FloatRange(min=0, min_open=True), default=0.07,
              show_default=True, help="Vote weight exp(similarity / temperature).")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
              help="Feature cache folder (default $SSLKIT_CACHE or ~/.cache/sslkit).")
@click.option("--no-cache", is_flag=True, help="Always re-extract (and do not store).")
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True,
              help="Images per batch when embedding.")
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
@click.option("--baselines", is_flag=True,
              help="Also score the raw pixels and the same architecture at its random "
                   "initialisation with the same protocol (needs --checkpoint and --data).")
@encoder_option
@recompute_bn_option
@no_progress_option
@device_option
@json_option
@debug_option
@renamed("--train", "--train-features", "train_features", type=click.Path(dir_okay=False))
@renamed("--test", "--test-features", "test_features", type=click.Path(dir_okay=False))
def knn(json_path, **options) -> None:
    """Weighted kNN classification (cosine similarity, exp(s/T) votes), top-1 and top-5.

    When the training split is long-tailed (largest class >= 2x the smallest), the
    many- (>100 training images), medium- (20-100) and few-shot (<20) classes' top-1 at
    the best k is added ("shot_groups" in the JSON).

    \b
    Examples:
      sslkit knn --train-features train.h5 --test-features test.h5
      sslkit knn --train-features train.npy --train-labels train-labels.npy \\
          --test-features test.npy --test-labels test-labels.npy
      sslkit knn --checkpoint runs/moco-digits/checkpoint.pt --data digits --json -
      sslkit knn --checkpoint runs/hcsc-digits/checkpoint.pt --data digits --baselines
      sslkit knn --checkpoint ckpt.pt --data fashion-mnist --unsupervised-score
      sslkit knn --checkpoint ckpt.pt --data cifar10-lt:/data/cifar --k 200
    """
    from sslkit.api.knn import knn as run

    result = run(**options)
    output, stderr = result.to_dict(), json_path == "-"
    for source in output["inputs"].values():
        report_skipped(source.get("skipped_images", []))
    for note in output["notes"]:
        click.echo(f"note: {note}", err=True)
    _print(output, stderr)
    if "baselines" in output:
        print_baselines("kNN top-1 % beside the baselines (same protocol)",
                        [(k, lambda o, k=k: o["k"][k]["top1"]) for k in output["k"]], output,
                        stderr)  # fmt: skip
    if "shot_groups" in output:
        columns, rows = shot_table(output["shot_groups"])
        print_table(f"long tail: many / medium / few-shot top-1 at k={output['shot_groups']['k']}",
                    columns, rows, to_stderr=stderr)  # fmt: skip
    if "unsupervised_score" in output:
        score = output["unsupervised_score"]
        rows = [["NMI(f, f') %", score["nmi"]], ["R(f, f') %", score["retrieval"]],
                ["NMI x R %", score["score"]]]  # fmt: skip
        print_table(f"Unsupervised score ({score['images']} images, k={score['clusters']})",
                    ["", "value"], rows, to_stderr=stderr)  # fmt: skip
    write_json(output, json_path)


def _print(output: dict, stderr: bool) -> None:
    rows = [[k, row["top1"], row["top5"]] for k, row in output["k"].items()]
    best = output["best"]
    title = (f"kNN (T={output['temperature']}, {output['train_size']} train / "
             f"{output['test_size']} test) best top-1 {best['top1']:.2f} at k={best['k']}")
    print_table(title + " (scores in %)", ["k", "top-1 %", "top-5 %"], rows, to_stderr=stderr)

