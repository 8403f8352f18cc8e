"""``sslkit linear``: linear classification on a frozen encoder."""

from __future__ import annotations

import click

from sslkit.commands.common import (
    CommaList,
    debug_option,
    device_option,
    json_option,
    print_table,
    report_skipped,
    shot_table,
    skip_bad_images_option,
)
from sslkit.utils.jsonout import write_json


@click.command()
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None,
              help="Encoder to evaluate (sslkit, torchvision or MoCo/PCL/HCSC release).")
@click.option("--data", default=None, metavar="SPEC",
              help="Labelled data spec: trains on its train split, tests on its test split "
                   "(e.g. cifar10-lt:ROOT or digits~lt10 for a long-tailed train split).")
@click.option("--train", "train_path", type=click.Path(dir_okay=False), default=None,
              help="Instead of --checkpoint/--data: a training feature file (features mode).")
@click.option("--test", "test_path", type=click.Path(dir_okay=False), default=None,
              help="... and a test feature file.")
@click.option("--mode", type=click.Choice(["augment", "features"]), default="augment",
              show_default=True,
              help="augment: crops + flips through the frozen backbone every epoch (the "
                   "papers' protocol); features: cached un-augmented features (fast).")
@click.option("--recipe", default="pcl", show_default=True,
              help="pcl (lr 5, x0.1 at 60/80), mocov2 (lr 30), adco (lr 10, cosine), conic "
                   "(lr 75, cosine), simsiam-lars (LARS lr 1.6, batch 4096, 90 epochs).")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Override the recipe's lr.")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Override epochs.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Override the batch size (total over processes).")
@click.option("--weight-decay", type=click.FloatRange(min=0), default=None)
@click.option("--schedule", type=click.Choice(["step", "cosine"]), default=None)
@click.option("--milestones", default=None, type=CommaList(int, positive=False, example="60,80"),
              help="Step-schedule epochs, e.g. 60,80.")
@click.option("--layer", type=click.Choice(["backbone", "head"]), default="backbone",
              show_default=True)
@click.option("--arch", default=None, help="Backbone arch if the checkpoint does not say.")
@click.option("--workdir", type=click.Path(file_okay=False), default=None,
              help="Where the probe's checkpoint (linear.pt) and linear.json go.")
@click.option("--resume", is_flag=True, help="Continue WORKDIR/linear.pt.")
@click.option("--force", is_flag=True, help="Start over even if WORKDIR holds a probe.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
              help="Feature cache folder (default $SSLKIT_CACHE or ~/.cache/sslkit).")
@click.option("--no-cache", is_flag=True, help="Always re-extract features.")
@click.option("--num-workers", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--download", is_flag=True, help="Allow downloading Fashion-MNIST if missing.")
@skip_bad_images_option
@device_option
@json_option
@debug_option
def linear(checkpoint, data, train_path, test_path, mode, recipe, lr, epochs, batch_size,
           weight_decay, schedule, milestones, layer, arch, workdir, resume, force, seed,
           cache_dir, no_cache, num_workers, download, skip_bad_images, device,
           json_path) -> None:  # fmt: skip
    """Train a linear classifier on a frozen encoder; top-1 / top-5 on the test split.

    When the training split is long-tailed (largest class >= 2x the smallest), the
    many- (>100 training images), medium- (20-100) and few-shot (<20) classes' top-1 at
    the final epoch is added ("shot_groups" in the JSON).

    \b
    Examples:
      sslkit linear --checkpoint runs/hcsc-fmnist/checkpoint.pt --data fashion-mnist \\
          --mode features --recipe mocov2 --epochs 30 --json -
      sslkit linear --checkpoint ckpt.pt --data imagefolder:/data/imagenet --recipe pcl \\
          --workdir runs/lincls
    """
    from sslkit.api.linear import linear as run

    result = run(checkpoint=checkpoint, data=data, train=train_path, test=test_path, mode=mode,
                 recipe=recipe, lr=lr, epochs=epochs, batch_size=batch_size,
                 weight_decay=weight_decay, schedule=schedule, milestones=milestones,
                 layer=layer, arch=arch, workdir=workdir, resume=resume, force=force, seed=seed,
                 cache_dir=cache_dir, no_cache=no_cache, num_workers=num_workers,
                 download=download, skip_bad_images=skip_bad_images, device=device)  # fmt: skip
    if not result.main_process:
        return
    output, stderr = result.to_dict(), json_path == "-"
    for source in output["inputs"].values():
        report_skipped(source.get("skipped_images", []))
    _print(output, stderr)
    write_json(output, json_path)


def _print(output: dict, stderr: bool) -> None:
    result = output["result"]
    rows = [[row["epoch"], f"{row['lr']:.4g}", f"{row['loss']:.4f}", row["top1"], row["top5"]]
            for row in output["history"][-10:]]  # fmt: skip
    title = (f"linear probe ({output['mode']}, recipe {output['recipe']['name']}): top-1 "
             f"{result['top1']:.2f}, best {result['best']['top1']:.2f} at epoch "
             f"{result['best']['epoch']}")  # fmt: skip
    print_table(title, ["epoch", "lr", "loss", "top-1 %", "top-5 %"], rows, to_stderr=stderr)
    shots = output.get("shot_groups")
    if shots is not None:
        columns, rows = shot_table(shots)
        print_table(f"long tail: many / medium / few-shot top-1 at epoch {shots['epoch']}",
                    columns, rows, to_stderr=stderr)  # fmt: skip
