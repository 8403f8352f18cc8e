"""``sslkit extract``: features of a dataset split to an HDF5 file."""

from __future__ import annotations

from pathlib import Path

import click

from sslkit.commands.common import (
    debug_option,
    device_option,
    json_option,
    report_skipped,
    skip_bad_images_option,
)


@click.command()
@click.option("--checkpoint", required=True, type=click.Path(dir_okay=False),
              help="sslkit checkpoint, torchvision state dict or MoCo/PCL/HCSC release.")
@click.option("--data", "data_spec", required=True, metavar="SPEC", help="Data spec to embed.")
@click.option("--split", type=click.Choice(["train", "test"]), default="train", show_default=True)
@click.option("--layer", type=click.Choice(["backbone", "head"]), default="backbone",
              show_default=True, help="Pooled backbone feature or the method's embedding.")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False),
              help="Output HDF5 file (written atomically).")
@click.option("--arch", default=None, help="Backbone arch if the checkpoint does not say.")
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--num-workers", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--half", is_flag=True, help="Store float16 features (half the size).")
@click.option("--force", is_flag=True, help="Overwrite an existing output file.")
@click.option("--download", is_flag=True, help="Allow downloading Fashion-MNIST if missing.")
@skip_bad_images_option
@device_option
@json_option
@debug_option
def extract(checkpoint, data_spec, split, layer, out_path, arch, batch_size, num_workers, half,
            force, download, skip_bad_images, device, json_path) -> None:  # fmt: skip
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
    from sslkit import distributed
    from sslkit.errors import BadInput
    from sslkit.features.extract import load_feature_network
    from sslkit.features.service import load_dataset
    from sslkit.features.streaming import write_dataset_features
    from sslkit.utils.jsonout import write_json

    out = Path(out_path)
    if out.exists() and not force:
        raise BadInput(f"{out} exists: pass --force to overwrite it")
    network = load_feature_network(checkpoint, layer, arch)
    dataset = load_dataset(data_spec, split, network, download, skip_bad_images)
    env = distributed.setup(device)
    try:
        written = write_dataset_features(network, dataset, env, out, batch_size=batch_size,
                                         num_workers=num_workers, half=half)  # fmt: skip
    finally:
        distributed.teardown()
    if not env.is_main:
        return
    result = {"out": str(out), "rows": written["rows"], "dim": written["dim"],
              "skipped_images": list(dataset.skipped_images), "processes": env.world_size,
              **written["attrs"]}  # fmt: skip
    report_skipped(dataset.skipped_images)
    if json_path != "-":
        click.echo(f"wrote {written['rows']} x {written['dim']} {layer} features to {out}",
                   err=True)  # fmt: skip
    write_json(result, json_path)
