"""``sslkit extract``: features of a dataset split to an HDF5 file."""

from __future__ import annotations

import click

from sslkit.commands.common import (
    debug_option,
    device_option,
    encoder_option,
    json_option,
    no_progress_option,
    recompute_bn_option,
    report_skipped,
    skip_bad_images_option,
)
from sslkit.utils.jsonout import write_json


@click.command()
@click.option("--checkpoint", required=True, type=click.Path(dir_okay=False),
              help="sslkit checkpoint, torchvision state dict or MoCo/PCL/HCSC release.")
@click.option("--data", required=True, metavar="SPEC", help="Data spec to embed.")
@click.option("--split", type=click.Choice(["train", "test"]), default="train", show_default=True)
@click.option("--layer", type=click.Choice(["backbone", "head"]), default="backbone",
              show_default=True, help="Pooled backbone feature or the method's embedding.")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="Output HDF5 file (written atomically).")
@click.option("--arch", default=None, help="Backbone arch if the checkpoint does not say.")
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--num-workers", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--half", is_flag=True, help="Store float16 features (half the size).")
@click.option("--force", is_flag=True, help="Overwrite an existing output file.")
@click.option("--download", is_flag=True, help="Allow downloading Fashion-MNIST if missing.")
@skip_bad_images_option
@encoder_option
@recompute_bn_option
@no_progress_option
@device_option
@json_option
@debug_option
def extract(json_path, **options) -> None:
    """Embed every image of a split and write features, labels and indices to HDF5.

    Features stream to the file batch by batch (memory stays at one batch whatever the
    dataset size); under torchrun every process embeds its share and rank 0 assembles
    the file in dataset order.

    \b
    Example:
      sslkit extract --checkpoint runs/moco-digits/checkpoint.pt --data digits \\
          --split test --out test.h5
      torchrun --nproc-per-node 4 -m sslkit extract --checkpoint C --data SPEC --out F.h5
    """
    from sslkit.api.extract import extract as run

    result = run(**options)
    if not result.main_process:
        return
    report_skipped(result["skipped_images"])
    if json_path != "-":
        click.echo(f"wrote {result['rows']} x {result['dim']} {result['layer']} features to "
                   f"{result.out}",
                   err=True)  # fmt: skip
    write_json(result.to_dict(), json_path)
