"""``sslkit linear``: linear classification on a frozen encoder."""

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
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None,
              help="Encoder to evaluate (sslkit, torchvision or MoCo/PCL/HCSC release).")
@click.option("--data", default=None, metavar="SPEC",
              help="Labelled data spec: trains on its train split, tests on its test split "
                   "(e.g. cifar10-lt:ROOT or digits~lt10 for a long-tailed train split).")
@click.option("--train-features", type=click.Path(dir_okay=False), default=None,
              metavar="FILE", help="Instead of --checkpoint/--data: training features (an "
                                   "sslkit feature file, another tool's HDF5 file with a "
                                   "'features' dataset and 'labels', or a .npy array) ...")
@click.option("--test-features", type=click.Path(dir_okay=False), default=None,
              metavar="FILE", help="... and test features, in the same forms.")
@train_labels_option
@test_labels_option
@click.option("--recipe", default=None,
              help="An SGD schedule of the papers: pcl (lr 5, x0.1 at 60/80), mocov2 (lr 30), "
                   "adco (lr 10, cosine), conic (lr 75, cosine), simsiam-lars (LARS lr 1.6, "
                   "batch 4096, 90 epochs). Default: no recipe, the validated L-BFGS probe.")
@click.option("--mode", type=click.Choice(["augment", "features"]), default=None,
              help="--recipe: augment (crops + flips through the frozen backbone every "
                   "epoch, the papers' protocol; the default) or features (cached features).")
@click.option("--costs", default=None, type=CommaList(float, example="0.01,0.1,1,10"),
              help="L-BFGS probe: inverse L2 strengths to try (default 1e-3 ... 1e3).")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None,
              help="--recipe: override its lr.")
@click.option("--epochs", type=click.IntRange(min=1), default=None,
              help="--recipe: override its epochs.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="--recipe: override its batch size (total over processes).")
@click.option("--weight-decay", type=click.FloatRange(min=0), default=None,
              help="--recipe: override its weight decay.")
@click.option("--schedule", type=click.Choice(["step", "cosine"]), default=None,
              help="--recipe: override its lr schedule.")
@click.option("--milestones", default=None, type=CommaList(int, positive=False, example="60,80"),
              help="--recipe: step-schedule epochs, e.g. 60,80.")
@click.option("--layer", type=click.Choice(["backbone", "head"]), default="backbone",
              show_default=True)
@click.option("--arch", default=None, help="Backbone arch if the checkpoint does not say.")
@click.option("--workdir", type=click.Path(file_okay=False), default=None,
              help="Where linear.json (and a recipe's resumable linear.pt) go.")
@click.option("--resume", is_flag=True, help="Continue WORKDIR/linear.pt.")
@click.option("--force", is_flag=True, help="Start over even if WORKDIR holds a probe.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the validation split (L-BFGS) or of the batch order (SGD).")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
              help="Feature cache folder (default $SSLKIT_CACHE or ~/.cache/sslkit).")
@click.option("--no-cache", is_flag=True, help="Always re-extract features.")
@click.option("--baselines", is_flag=True,
              help="Also probe the raw pixels and the same architecture at its random "
                   "initialisation the same way (cached features: not with --mode augment).")
@click.option("--num-workers", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--download", is_flag=True, help="Allow downloading Fashion-MNIST if missing.")
@skip_bad_images_option
@encoder_option
@recompute_bn_option
@no_progress_option
@device_option
@json_option
@debug_option
@renamed("--train", "--train-features", "train_features", type=click.Path(dir_okay=False))
@renamed("--test", "--test-features", "test_features", type=click.Path(dir_okay=False))
def linear(json_path, **options) -> None:
    """Train a linear classifier on a frozen encoder; top-1 / top-5 on the test split.

    Default: an L2 logistic regression on cached features (L-BFGS), its strength chosen on
    a class-balanced 20 % of the training split, refitted on all of it: no learning rate to
    tune, seconds on small data. --recipe runs a paper's SGD protocol instead. The output
    says which ran. On a long-tailed training split (largest class >= 2x the smallest) the
    many- (>100 training images), medium- (20-100) and few-shot (<20) classes' top-1 is
    added ("shot_groups" in the JSON).

    \b
    Examples:
      sslkit linear --checkpoint runs/hcsc-digits/checkpoint.pt --data digits --baselines
      sslkit linear --train-features train.npy --train-labels train-labels.npy \\
          --test-features test.npy --test-labels test-labels.npy
      sslkit linear --checkpoint ckpt.pt --data imagefolder:/data/imagenet --recipe pcl \\
          --workdir runs/lincls
    """
    from sslkit.api.linear import linear as run

    result = run(**options)
    if not result.main_process:
        return
    output, stderr = result.to_dict(), json_path == "-"
    for source in output["inputs"].values():
        report_skipped(source.get("skipped_images", []))
    for note in output["notes"]:
        click.echo(f"note: {note}", err=True)
    if output["protocol"] == "sgd":
        _print_sgd(output, stderr)
    else:
        _print_lbfgs(output, stderr)
    if "baselines" in output:
        print_baselines("linear probe beside the baselines (same protocol)",
                        [(f"test {key} %", lambda o, key=key: o["result"][key])
                         for key in ("top1", "top5")], output, stderr)  # fmt: skip
    shots = output.get("shot_groups")
    if shots is not None:
        columns, rows = shot_table(shots)
        print_table("long tail: many / medium / few-shot top-1 of the final probe", columns,
                    rows, to_stderr=stderr)  # fmt: skip
    write_json(output, json_path)


def _print_lbfgs(output: dict, stderr: bool) -> None:
    result = output["result"]
    rows = [[f"cost {cost}" + (" (chosen)" if float(cost) == result["cost"] else ""), score]
            for cost, score in result["validation"].items()]  # fmt: skip
    rows += [["test top-1 %", result["top1"]], ["test top-5 %", result["top5"]],
             ["test mean per-class %", result["mean_per_class"]]]  # fmt: skip
    print_table(f"linear probe: {output['description']}", ["", "validation top-1 % / value"],
                rows, to_stderr=stderr)  # fmt: skip


def _print_sgd(output: dict, stderr: bool) -> None:
    result = output["result"]
    rows = [[row["epoch"], f"{row['lr']:.4g}", f"{row['loss']:.4f}", row["top1"], row["top5"]]
            for row in output["history"][-10:]]  # fmt: skip
    title = (f"linear probe: {output['description']}: top-1 {result['top1']:.2f}, best "
             f"{result['best']['top1']:.2f} at epoch {result['best']['epoch']}")  # fmt: skip
    print_table(title, ["epoch", "lr", "loss", "top-1 %", "top-5 %"], rows, to_stderr=stderr)
