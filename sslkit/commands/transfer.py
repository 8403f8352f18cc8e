"""``sslkit transfer``: frozen-feature transfer to another labelled image collection."""

from __future__ import annotations

import click

from sslkit.commands.common import (
    CommaList,
    debug_option,
    device_option,
    json_option,
    no_progress_option,
    print_table,
    renamed,
)
from sslkit.utils.jsonout import write_json

TASKS = ("imagefolder", "knn-transfer", "voc07", "places205")




@click.command()
@click.option("--task", type=click.Choice(TASKS), required=True, metavar="TASK",
              help="imagefolder: linear classifier on frozen features; knn-transfer: "
                   "zero-shot weighted kNN (e.g. CUB-200-2011); voc07: PASCAL VOC 2007 "
                   "multi-label (SVM or linear layer); places205: Places205 (linear or SVM).")
@click.option("--checkpoint", required=True, type=click.Path(dir_okay=False),
              help="Encoder (sslkit, torchvision or MoCo/PCL/HCSC release).")
@click.option("--train-images", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="imagefolder/knn-transfer: training images, DIR/<class>/<image>.")
@click.option("--test-images", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="imagefolder/knn-transfer: test images, same class folders.")
@click.option("--val-images", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="Validation images for the cost (default: a class-balanced 20 % of "
                   "--train-images).")
@click.option("--data-root", type=click.Path(file_okay=False), default=None, metavar="ROOT",
              help="voc07/places205: the dataset root (VOCdevkit's parent, or the folder "
                   "with trainvalsplit_places205/).")
@click.option("--protocol", type=click.Choice(["lbfgs", "sgd", "svm"]), default=None,
              help="lbfgs: L2 logistic regression, cost chosen on validation (LoGo/SimCLR; "
                   "imagefolder default); sgd: a linear layer trained by SGD (voc07/places205 "
                   "default); svm: PCL's linear SVMs (voc07/places205).")
@click.option("--voc-protocol", type=click.Choice(["standard", "hcsc"]), default=None,
              help="voc07 --protocol sgd: standard (eval-mode BN, cached features, cosine, "
                   "per-class mAP; default) or hcsc (HCSC's script with its quirks).")
@click.option("--low-shot", default=None, metavar="K,K,...",
              type=CommaList(int, example="1,2,4,8,16"),
              help="--protocol svm: images per class, e.g. 1,2,4,8,16 (default: all images).")
@click.option("--runs", type=click.IntRange(min=1), default=5, show_default=True,
              help="--low-shot: random draws per k (mean and std reported).")
@click.option("--cost", type=click.FloatRange(min=0, min_open=True), default=0.5,
              show_default=True, help="--protocol svm: the SVM's C.")
@click.option("--metric", type=click.Choice(["top1", "mean_per_class"]), default="top1",
              show_default=True, help="What the validation maximises (LoGo: per dataset).")
@click.option("--costs", default=None, type=CommaList(float, example="0.01,0.1,1,10"),
              help="Inverse L2 strengths to try (default 1e-3 ... 1e3).")
@click.option("--recipe", default=None,
              help="--protocol sgd recipe (default: mocov2; voc07-hcsc for voc07, "
                   "places-hcsc for places205).")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None,
              help="--protocol sgd: override the recipe's lr.")
@click.option("--epochs", type=click.IntRange(min=1), default=None,
              help="--protocol sgd: override the recipe's epochs.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Override the recipe's batch size.")
@click.option("--k", default="10,20,100,200", show_default=True,
              type=CommaList(int, example="10,20,100,200"),
              help="knn-transfer: numbers of neighbours.")
@click.option("--temperature", type=click.FloatRange(min=0, min_open=True), default=0.07,
              show_default=True, help="knn-transfer: vote weight exp(s / T).")
@click.option("--image-size", type=click.IntRange(min=8), default=None,
              help="Side the images are resized to (default: the checkpoint's, else 224; "
                   "voc07 hcsc: the crop, default 300).")
@click.option("--layer", type=click.Choice(["backbone", "head"]), default="backbone",
              show_default=True)
@click.option("--arch", default=None, help="Backbone arch if the checkpoint does not say.")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
              help="Feature cache folder (default $SSLKIT_CACHE or ~/.cache/sslkit).")
@click.option("--no-cache", is_flag=True, help="Always re-extract features.")
@click.option("--seed", type=int, default=0, show_default=True)
@no_progress_option
@device_option
@json_option
@debug_option
@renamed("--train", "--train-images", "train_images", type=click.Path(file_okay=False))
@renamed("--test", "--test-images", "test_images", type=click.Path(file_okay=False))
@renamed("--val", "--val-images", "val_images", type=click.Path(file_okay=False))
@renamed("--data", "--data-root", "data_root", type=click.Path(file_okay=False))
def transfer(json_path, **options) -> None:
    """Transfer a frozen encoder: linear classifier, kNN, or VOC07 / Places205 protocols.

    \b
    Examples:
      sslkit transfer --task imagefolder --checkpoint ckpt.pt \\
          --train-images /data/pets/train --test-images /data/pets/test \\
          --metric mean_per_class
      sslkit transfer --task knn-transfer --checkpoint ckpt.pt \\
          --train-images /data/cub/train --test-images /data/cub/test --json -
      sslkit transfer --task voc07 --data-root /data/voc --protocol svm \\
          --low-shot 1,2,4,8,16 --checkpoint ckpt.pt
      sslkit transfer --task voc07 --data-root /data/voc --voc-protocol hcsc \\
          --checkpoint ckpt.pt
      sslkit transfer --task places205 --data-root /data/places205 --checkpoint ckpt.pt
    """
    from sslkit.api.transfer import transfer as run

    result = run(**options)
    _print(result.to_dict(), json_path)
    write_json(result.to_dict(), json_path)


def _print(output: dict, json_path: str | None) -> None:
    result, stderr = output["result"], json_path == "-"
    if result["protocol"] == "knn":
        rows = [[k, v["top1"], v["top5"]] for k, v in result["k"].items()]
        print_table(f"kNN transfer: best top-1 {result['best']['top1']:.2f} at "
                    f"k={result['best']['k']}", ["k", "top-1 %", "top-5 %"], rows,
                    to_stderr=stderr)  # fmt: skip
        return
    if result["protocol"] == "svm":
        rows = [[k, v["mean"], v["std"], len(v["runs"])] for k, v in result["shots"].items()]
        print_table(f"{output['task']} linear SVM (C={result['cost']}): {result['metric']} %",
                    ["k per class", "mean", "std", "runs"], rows, to_stderr=stderr)  # fmt: skip
        return
    if output["task"] == "voc07":
        rows = [["test mAP % (per class, difficult ignored)", _value(result["map"])],
                ["test sample-wise AP % (HCSC metric)", result["sample_map"]]]  # fmt: skip
        best = result["best"]
        rows.append(["best epoch (on val)", best["epoch"]])
        if "final" in result:
            rows.append(["final-epoch test mAP %", _value(result["final"]["map"])])
        print_table(f"voc07 linear layer ({result['voc_protocol']} protocol)", ["", "value"],
                    rows, to_stderr=stderr)  # fmt: skip
        return
    rows = [["top-1 %", result["top1"]], ["mean per-class %", result["mean_per_class"]]]
    if "best" in result:
        rows.append([f"best top-1 % (epoch {result['best']['epoch']})", result["best"]["top1"]])
    if "cost" in result:
        rows.append(["cost (validated)", result["cost"]])
    print_table(f"transfer ({output['task']}, {result['protocol']}) on "
                f"{len(output['classes'])} classes", ["", "value"], rows,
                to_stderr=stderr)  # fmt: skip


def _value(value: float | None) -> float | str:
    """A metric for the table (``-`` when there was nothing to score)."""
    return "-" if value is None else value
