"""``sslkit semisup``: fine-tune an encoder with a small fraction of the labels."""

from __future__ import annotations

import click

from sslkit.commands.common import (
    debug_option,
    device_option,
    json_option,
    report_skipped,
    run_evaluation,
    skip_bad_images_option,
)
from sslkit.commands.linear import parse_milestones

STATE_FILE = "semisup.pt"


@click.command()
@click.option("--checkpoint", required=True, type=click.Path(dir_okay=False),
              help="Encoder to fine-tune (sslkit, torchvision or MoCo/PCL/HCSC release).")
@click.option("--data", "data_spec", required=True, metavar="SPEC",
              help="Labelled data spec: its train split gives the subset, its test split scores.")
@click.option("--labels", "fraction", type=float, default=None,
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
@click.option("--milestones", default=None, callback=parse_milestones,
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
@device_option
@json_option
@debug_option
def semisup(checkpoint, data_spec, fraction, subset_file, recipe, epochs, backbone_lr, head_lr,
            batch_size, weight_decay, milestones, eval_every, arch, workdir, resume, force, seed,
            num_workers, download, skip_bad_images, device, json_path) -> None:  # fmt: skip
    """Fine-tune encoder + linear head on 1 % / 10 % of the labels; top-1 / top-5.

    \b
    Examples:
      sslkit semisup --checkpoint runs/hcsc-fmnist/checkpoint.pt --data fashion-mnist \\
          --labels 0.1 --recipe hcsc --epochs 6 --milestones 4,5 --json -
      sslkit semisup --checkpoint ckpt.pt --data imagefolder:/data/imagenet \\
          --subset-file 1percent.txt --recipe hcsc --workdir runs/semi1
    """
    from sslkit.errors import BadInput
    from sslkit.eval.semisup import resolve_recipe

    if (fraction is None) == (subset_file is None):
        raise BadInput("give either --labels FRACTION (e.g. 0.1) or --subset-file FILE")
    chosen = resolve_recipe(recipe, epochs=epochs, backbone_lr=backbone_lr, head_lr=head_lr,
                            batch_size=batch_size, weight_decay=weight_decay,
                            milestones=milestones)  # fmt: skip
    run_evaluation(
        "semisup", workdir, STATE_FILE, resume, force, device,
        lambda env, folder: _run(env, chosen, checkpoint, data_spec, fraction, subset_file,
                                 eval_every, arch, folder, resume, seed, num_workers, download,
                                 skip_bad_images),
        _print, json_path)  # fmt: skip


def _run(env, recipe, checkpoint, spec, fraction, subset_file, eval_every, arch, folder, resume,
         seed, num_workers, download, skip_bad_images) -> dict:  # fmt: skip
    import hashlib
    from dataclasses import asdict

    import torch

    from sslkit.errors import BadInput
    from sslkit.eval.common import load_state, save_state, summary
    from sslkit.eval.semisup import (
        Classifier,
        FineTuneData,
        balanced_subset,
        fine_tune,
        subset_from_file,
    )
    from sslkit.features.extract import load_feature_network
    from sslkit.features.service import eval_transform_for, load_dataset

    network = load_feature_network(checkpoint, "backbone", arch)
    train = load_dataset(spec, "train", network, download, skip_bad_images)
    test = load_dataset(spec, "test", network, download, skip_bad_images)
    for split in (train, test):
        report_skipped(split.skipped_images)
    if (train.labels < 0).any() or (test.labels < 0).any():
        raise BadInput(f"{spec} has unlabelled images (-1): semisup needs labels")
    indices = (subset_from_file(train, subset_file) if subset_file
               else balanced_subset(train.labels, fraction, seed))  # fmt: skip
    labelled = train.subset(indices)
    used_fraction = len(indices) / len(train)
    num_classes = int(max(train.labels.max(), test.labels.max())) + 1
    transform = eval_transform_for(network, train)
    data = FineTuneData(labelled, test, transform.size, transform.mean, transform.std)
    torch.manual_seed(seed)
    model = Classifier(network.encoder.build_backbone(), num_classes)
    subset_id = hashlib.sha256(indices.astype("int64").tobytes()).hexdigest()[:16]
    meta = {"format": "sslkit.semisup", "recipe": asdict(recipe), "subset": subset_id,
            "encoder": network.encoder.sha256}  # fmt: skip
    resume_state = load_state(folder / STATE_FILE, meta) if resume and folder else None

    def save(state) -> None:
        if folder is not None and env.is_main:
            save_state(folder / STATE_FILE, state, meta)

    state = fine_tune(recipe, model, data, env.device, fraction=used_fraction, seed=seed,
                      eval_every=eval_every, num_workers=num_workers, resume=resume_state,
                      on_epoch_end=save)  # fmt: skip
    tested = [row for row in state.history if "top1" in row]
    return {
        "protocol": "semisup", "recipe": asdict(recipe),
        "head_lr": recipe.head_lr_for(used_fraction),
        "labelled": {"images": len(indices), "fraction": round(used_fraction, 6),
                     "source": subset_file or f"balanced {fraction:g}, seed {seed}",
                     "subset_sha": subset_id},
        "num_classes": num_classes, "result": summary(tested), "history": state.history,
        "inputs": {**network.provenance(), "dataset": train.spec,
                   "train_fingerprint": train.fingerprint(),
                   "test_fingerprint": test.fingerprint(),
                   "skipped_images": {"train": list(train.skipped_images),
                                      "test": list(test.skipped_images)}},
    }  # fmt: skip


def _print(output: dict, json_path: str | None) -> None:
    from sslkit.commands.common import print_table

    result = output["result"]
    rows = [[row["epoch"], f"{row['loss']:.4f}", row.get("top1", ""), row.get("top5", "")]
            for row in output["history"][-10:]]  # fmt: skip
    title = (f"semisup ({output['labelled']['images']} labelled images, recipe "
             f"{output['recipe']['name']}): top-1 {result['top1']:.2f}, best "
             f"{result['best']['top1']:.2f} at epoch {result['best']['epoch']}")  # fmt: skip
    print_table(title, ["epoch", "loss", "top-1 %", "top-5 %"], rows, to_stderr=json_path == "-")
