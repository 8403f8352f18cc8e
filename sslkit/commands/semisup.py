"""``sslkit semisup``: fine-tune an encoder with a small fraction of the labels."""

from __future__ import annotations

import click

from sslkit.commands.common import (
    CommaList,
    debug_option,
    device_option,
    json_option,
    no_progress_option,
    print_table,
    report_skipped,
    skip_bad_images_option,
)
from sslkit.utils.jsonout import write_json


@click.command()
@click.option("--checkpoint", required=True, type=click.Path(dir_okay=False),
              help="Encoder to fine-tune (sslkit, torchvision or MoCo/PCL/HCSC release).")
@click.option("--data", required=True, metavar="SPEC",
              help="Labelled data spec: its train split gives the subset, its test split scores.")
@click.option("--labels", type=float, default=None,
              help="Fraction of labelled training images, class-balanced (e.g. 0.01, 0.1).")
@click.option("--subset-file", type=click.Path(dir_okay=False), default=None,
              help="Instead of --labels: the images to use, one file name (or index) per "
                   "line, as the released 1percent.txt / 10percent.txt.")
@click.option("--recipe", default="hcsc", show_default=True,
              help="hcsc (70 ep, trunk 0.005, head 0.02, x0.1 at 30/60), pcl (20 ep, 0.01, "
                   "head 1.0 at 1 % / 0.1, x0.2 at 12/16, wd 5e-4), cld (20 ep, 0.01, head "
                   "x100, /5 at 12/16, wd 1e-4).")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Override epochs.")
@click.option("--backbone-lr", type=click.FloatRange(min=0), default=None)
@click.option("--head-lr", type=click.FloatRange(min=0, min_open=True), default=None)
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Override the batch size (total over processes).")
@click.option("--weight-decay", type=click.FloatRange(min=0), default=None)
@click.option("--milestones", default=None, type=CommaList(int, positive=False, example="60,80"),
              help="Step-decay epochs, e.g. 30,60.")
@click.option("--eval-every", type=click.IntRange(min=1), default=1, show_default=True,
              help="Test every N epochs (and after the last).")
@click.option("--arch", default=None, help="Backbone arch if the checkpoint does not say.")
@click.option("--workdir", type=click.Path(file_okay=False), default=None,
              help="Where semisup.pt (resumable state) and semisup.json go.")
@click.option("--resume", is_flag=True, help="Continue WORKDIR/semisup.pt.")
@click.option("--force", is_flag=True, help="Start over even if WORKDIR holds a run.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the subset draw, batch order and augmentation.")
@click.option("--num-workers", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--download", is_flag=True, help="Allow downloading Fashion-MNIST if missing.")
@skip_bad_images_option
@no_progress_option
@device_option
@json_option
@debug_option
def semisup(json_path, **options) -> None:
    """Fine-tune encoder + linear head on 1 % / 10 % of the labels; top-1 / top-5.

    \b
    Examples:
      sslkit semisup --checkpoint runs/hcsc-fmnist/checkpoint.pt --data fashion-mnist \\
          --labels 0.1 --recipe hcsc --epochs 6 --milestones 4,5 --json -
      sslkit semisup --checkpoint ckpt.pt --data imagefolder:/data/imagenet \\
          --subset-file 1percent.txt --recipe hcsc --workdir runs/semi1
    """
    from sslkit.api.semisup import semisup as run

    result = run(**options)
    if not result.main_process:
        return
    output = result.to_dict()
    for skipped in output["inputs"]["skipped_images"].values():
        report_skipped(skipped)
    rows = [[row["epoch"], f"{row['loss']:.4f}", row.get("top1", ""), row.get("top5", "")]
            for row in output["history"][-10:]]  # fmt: skip
    scores = output["result"]
    title = (f"semisup ({output['labelled']['images']} labelled images, recipe "
             f"{output['recipe']['name']}): top-1 {scores['top1']:.2f}, best "
             f"{scores['best']['top1']:.2f} at epoch {scores['best']['epoch']}")  # fmt: skip
    print_table(title, ["epoch", "loss", "top-1 %", "top-5 %"], rows, to_stderr=json_path == "-")
    write_json(output, json_path)
