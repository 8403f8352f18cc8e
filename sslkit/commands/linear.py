"""``sslkit linear``: linear classification on a frozen encoder."""

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

PROBE_CHECKPOINT = "linear.pt"


def parse_milestones(_ctx, _param, value: str | None) -> tuple[int, ...] | None:
    """``"60,80"`` -> ``(60, 80)``."""
    if value is None:
        return None
    try:
        return tuple(int(part) for part in value.split(",") if part.strip())
    except ValueError:
        raise click.BadParameter("use comma-separated epochs, e.g. 60,80") from None


@click.command()
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None,
              help="Encoder to evaluate (sslkit, torchvision or MoCo/PCL/HCSC release).")
@click.option("--data", "data_spec", default=None, metavar="SPEC",
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
@click.option("--milestones", default=None, callback=parse_milestones,
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
def linear(checkpoint, data_spec, train_path, test_path, mode, recipe, lr, epochs, batch_size,
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
    from sslkit.errors import BadInput
    from sslkit.eval.linear import resolve_recipe

    by_files = train_path is not None or test_path is not None
    if by_files == (checkpoint is not None or data_spec is not None):
        raise BadInput("give either --checkpoint and --data, or --train and --test feature files")
    if by_files and not (train_path and test_path):
        raise BadInput("both --train and --test feature files are needed")
    if not by_files and not (checkpoint and data_spec):
        raise BadInput("both --checkpoint and --data are needed")
    if by_files and mode == "augment":
        mode = "features"  # feature files hold no images to augment
    chosen = resolve_recipe(recipe, lr=lr, epochs=epochs, batch_size=batch_size,
                            weight_decay=weight_decay, schedule=schedule, milestones=milestones)
    run_evaluation(
        "linear", workdir, PROBE_CHECKPOINT, resume, force, device,
        lambda env, folder: _run(env, chosen, mode, checkpoint, data_spec, train_path,
                                 test_path, layer, arch, folder, resume, seed, cache_dir,
                                 no_cache, num_workers, download, skip_bad_images),
        _print, json_path)  # fmt: skip


def _run(env, recipe, mode, checkpoint, spec, train_path, test_path, layer, arch, folder, resume,
         seed, cache_dir, no_cache, num_workers, download, skip_bad_images) -> dict:  # fmt: skip
    from dataclasses import asdict

    import torch

    from sslkit.eval.common import load_state, save_state, summary
    from sslkit.eval.linear import (
        augmented_batches,
        check_unchanged,
        feature_batches,
        frozen_state,
        new_classifier,
        train_probe,
    )

    device = env.device
    if train_path:
        from sslkit.features.store import read_feature_pair

        train, test, sources = read_feature_pair(train_path, test_path)
        backbone = None
    else:
        train, test, sources, backbone, dataset, size = _from_checkpoint(
            checkpoint, spec, layer, arch, mode, device, cache_dir, no_cache, download,
            skip_bad_images)
        for source in sources.values():
            report_skipped(source["skipped_images"])
    num_classes = _num_classes(train.labels, test.labels)
    test_x = torch.from_numpy(test.features).float().to(device)
    test_y = torch.from_numpy(test.labels).to(device)
    if mode == "features":
        train_x = torch.from_numpy(train.features).float().to(device)
        train_y = torch.from_numpy(train.labels).to(device)
        batches = feature_batches(train_x, train_y, recipe.batch_size, seed)
        dim = train_x.shape[1]
    else:
        mean, std = dataset.info.mean, dataset.info.std
        batches = augmented_batches(backbone, dataset, size, mean, std, recipe.batch_size, seed,
                                    device, num_workers)  # fmt: skip
        dim = test_x.shape[1]
    torch.manual_seed(seed)  # here: a cache miss builds (and randomly initialises) a network
    classifier = new_classifier(dim, num_classes).to(device)
    before = frozen_state(backbone) if backbone is not None else None
    meta = {"format": "sslkit.linear-probe", "recipe": asdict(recipe), "mode": mode,
            "encoder": sources["test"].get("checkpoint_sha256", "")}  # fmt: skip
    resume_state = load_state(folder / PROBE_CHECKPOINT, meta) if resume and folder else None

    def save(state) -> None:
        if folder is not None and env.is_main:
            save_state(folder / PROBE_CHECKPOINT, state, meta)

    state = train_probe(recipe, classifier, batches, test_x, test_y, resume=resume_state,
                        on_epoch_end=save)  # fmt: skip
    if before is not None:
        check_unchanged(backbone, before)
    output = {"protocol": "linear", "mode": mode, "recipe": asdict(recipe),
              "num_classes": num_classes, "result": summary(state.history),
              "history": state.history, "inputs": sources}  # fmt: skip
    shots = _shot_groups(classifier, test_x, train.labels, test.labels, state.epochs_done)
    if shots is not None:
        output["shot_groups"] = shots
    return output


def _shot_groups(classifier, test_x, train_labels, test_labels, epoch: int) -> dict | None:
    """Many/medium/few-shot top-1 of the final probe, when the training split is long-tailed."""
    from sslkit.eval.linear import probe_logits
    from sslkit.eval.longtail import is_long_tailed, shot_accuracy

    if not is_long_tailed(train_labels, test_labels):
        return None
    predictions = probe_logits(classifier, test_x).topk(1, dim=1).indices[:, 0].cpu().numpy()
    return {"epoch": epoch, **shot_accuracy(train_labels, predictions, test_labels)}


def _from_checkpoint(checkpoint, spec, layer, arch, mode, device, cache_dir, no_cache, download,
                     skip_bad_images):  # fmt: skip
    from sslkit.features.extract import load_feature_network
    from sslkit.features.service import eval_transform_for, load_dataset, split_features

    network = load_feature_network(checkpoint, layer, arch)
    splits = ("train", "test") if mode == "features" else ("test",)
    parts, sources = split_features(network, spec, splits, device, cache_dir=cache_dir,
                                    use_cache=not no_cache, download=download,
                                    normalized=False,
                                    skip_bad_images=skip_bad_images)  # fmt: skip
    test = parts[-1]
    if mode == "features":
        return parts[0], test, sources, None, None, None
    dataset = load_dataset(spec, "train", network, download, skip_bad_images)
    size = eval_transform_for(network, dataset).size
    sources["train"] = {**network.provenance(), "dataset": dataset.spec, "split": "train",
                        "dataset_fingerprint": dataset.fingerprint(), "augmented": True,
                        "transform": f"random-resized-crop{size}(0.08-1)+flip",
                        "skipped_images": list(dataset.skipped_images)}  # fmt: skip
    backbone = network.network.to(device).eval()
    return dataset, test, sources, backbone, dataset, size  # its images are embedded per epoch


def _num_classes(train_labels, test_labels) -> int:
    from sslkit.errors import BadInput

    if len(train_labels) == 0:
        raise BadInput("the training split is empty")
    if (train_labels < 0).any() or (test_labels < 0).any():
        raise BadInput("linear classification needs labels, but some images have none (-1)")
    return int(max(train_labels.max(), test_labels.max())) + 1


def _print(output: dict, json_path: str | None) -> None:
    from sslkit.commands.common import print_table

    result = output["result"]
    rows = [[row["epoch"], f"{row['lr']:.4g}", f"{row['loss']:.4f}", row["top1"], row["top5"]]
            for row in output["history"][-10:]]  # fmt: skip
    title = (f"linear probe ({output['mode']}, recipe {output['recipe']['name']}): top-1 "
             f"{result['top1']:.2f}, best {result['best']['top1']:.2f} at epoch "
             f"{result['best']['epoch']}")  # fmt: skip
    print_table(title, ["epoch", "lr", "loss", "top-1 %", "top-5 %"], rows,
                to_stderr=json_path == "-")  # fmt: skip
    shots = output.get("shot_groups")
    if shots is not None:
        from sslkit.eval.longtail import shot_table

        columns, rows = shot_table(shots)
        print_table(f"long tail: many / medium / few-shot top-1 at epoch {shots['epoch']}",
                    columns, rows, to_stderr=json_path == "-")  # fmt: skip
