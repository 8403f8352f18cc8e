"""``sslkit transfer``: frozen-feature transfer to another labelled image collection."""

from __future__ import annotations

import click

from sslkit.commands.common import debug_option, device_option, json_option
from sslkit.commands.knn import parse_ks

TASKS = ("imagefolder", "knn-transfer")


def parse_costs(_ctx, _param, value: str | None) -> tuple[float, ...] | None:
    """``"0.01,0.1,1"`` -> ``(0.01, 0.1, 1.0)``."""
    if value is None:
        return None
    try:
        costs = tuple(float(part) for part in value.split(",") if part.strip())
    except ValueError:
        costs = ()
    if not costs or min(costs) <= 0:
        raise click.BadParameter("use comma-separated positive numbers, e.g. 0.01,0.1,1,10")
    return costs


@click.command()
@click.option("--task", type=click.Choice(TASKS), required=True,
              help="imagefolder: linear classifier on frozen features; knn-transfer: "
                   "zero-shot weighted kNN (e.g. CUB-200-2011).")
@click.option("--checkpoint", required=True, type=click.Path(dir_okay=False),
              help="Encoder (sslkit, torchvision or MoCo/PCL/HCSC release).")
@click.option("--train", "train_dir", required=True, type=click.Path(file_okay=False),
              help="Training images: DIR/<class>/<image>.")
@click.option("--test", "test_dir", required=True, type=click.Path(file_okay=False),
              help="Test images, same class folders.")
@click.option("--val", "val_dir", type=click.Path(file_okay=False), default=None,
              help="Validation images for the cost (default: 20 %% of --train, balanced).")
@click.option("--protocol", type=click.Choice(["lbfgs", "sgd"]), default="lbfgs",
              show_default=True,
              help="lbfgs: L2 logistic regression, cost chosen on validation (LoGo/SimCLR); "
                   "sgd: the linear-probe recipe on cached features.")
@click.option("--metric", type=click.Choice(["top1", "mean_per_class"]), default="top1",
              show_default=True, help="What the validation maximises (LoGo: per dataset).")
@click.option("--costs", default=None, callback=parse_costs,
              help="Inverse L2 strengths to try (default 1e-3 ... 1e3).")
@click.option("--recipe", default="mocov2", show_default=True, help="--protocol sgd recipe.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None)
@click.option("--epochs", type=click.IntRange(min=1), default=None)
@click.option("--k", "ks", default="10,20,100,200", show_default=True, callback=parse_ks,
              help="knn-transfer: numbers of neighbours.")
@click.option("--temperature", type=click.FloatRange(min=0, min_open=True), default=0.07,
              show_default=True, help="knn-transfer: vote weight exp(s / T).")
@click.option("--image-size", type=click.IntRange(min=8), default=None,
              help="Side the images are resized to (default: the checkpoint's, else 224).")
@click.option("--layer", type=click.Choice(["backbone", "head"]), default="backbone",
              show_default=True)
@click.option("--arch", default=None, help="Backbone arch if the checkpoint does not say.")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
              help="Feature cache folder (default $SSLKIT_CACHE or ~/.cache/sslkit).")
@click.option("--no-cache", is_flag=True, help="Always re-extract features.")
@click.option("--seed", type=int, default=0, show_default=True)
@device_option
@json_option
@debug_option
def transfer(task, checkpoint, train_dir, test_dir, val_dir, protocol, metric, costs, recipe, lr,
             epochs, ks, temperature, image_size, layer, arch, cache_dir, no_cache, seed, device,
             json_path) -> None:  # fmt: skip
    """Transfer a frozen encoder to labelled image folders: linear classifier or kNN.

    \b
    Examples:
      sslkit transfer --task imagefolder --checkpoint ckpt.pt \\
          --train /data/pets/train --test /data/pets/test --metric mean_per_class
      sslkit transfer --task knn-transfer --checkpoint ckpt.pt \\
          --train /data/cub/train --test /data/cub/test --json -
    """
    import time

    from sslkit.engine.distributed import choose_device
    from sslkit.features.extract import load_feature_network
    from sslkit.utils.jsonout import write_json

    started = time.perf_counter()
    torch_device = choose_device(device)
    network = load_feature_network(checkpoint, layer, arch)
    dirs = {"train": train_dir, "test": test_dir, **({"val": val_dir} if val_dir else {})}
    normalized = task == "knn-transfer"
    features, sources = _features(network, dirs, image_size, torch_device, cache_dir,
                                  not no_cache, normalized)  # fmt: skip
    if task == "knn-transfer":
        result = _knn(features, ks, temperature, torch_device)
    elif protocol == "lbfgs":
        result = _lbfgs(features, costs, metric, seed)
    else:
        result = _sgd(features, recipe, lr, epochs, seed, torch_device)
    output = {"task": task, "result": result, "inputs": sources,
              "classes": list(features["train"][1]),
              "seconds": round(time.perf_counter() - started, 3)}  # fmt: skip
    _print(output, json_path)
    write_json(output, json_path)


def _features(network, dirs, image_size, device, cache_dir, use_cache, normalized):
    """Per split: (FeatureSet, class names), through the feature cache; classes must agree."""
    from pathlib import Path

    from sslkit.data.sources import ImageFolderDataset
    from sslkit.errors import BadInput
    from sslkit.features.service import dataset_features

    config = network.encoder.config or {}
    size = image_size or (config.get("data") or {}).get("image_size") or 224
    out, sources = {}, {}
    for split, folder in dirs.items():
        root = Path(folder).expanduser()
        dataset = ImageFolderDataset(root, split if split != "val" else "test",
                                     f"imagefolder:{root}", size)  # fmt: skip
        features, source = dataset_features(network, dataset, device, use_cache=use_cache,
                                            cache_dir=cache_dir, normalized=normalized)  # fmt: skip
        out[split] = (features, dataset.info.class_names)
        sources[split] = source
    for split in dirs:
        if out[split][1] != out["train"][1]:
            raise BadInput(f"--{split} has other class folders than --train: "
                           "use the same class names in every split")  # fmt: skip
    return out, sources


def _knn(features, ks, temperature, device) -> dict:
    from sslkit.eval.knn import knn_classify

    train, test = features["train"][0], features["test"][0]
    result = knn_classify(train.features, train.labels, test.features, test.labels, ks,
                          temperature, device)  # fmt: skip
    return {"protocol": "knn", **result.as_dict()}


def _lbfgs(features, costs, metric, seed) -> dict:
    from sslkit.eval.transfer import DEFAULT_COSTS, logistic_transfer

    train, test = features["train"][0], features["test"][0]
    val = features.get("val", (None,))[0]
    return logistic_transfer(
        train.features, train.labels, test.features, test.labels,
        None if val is None else val.features, None if val is None else val.labels,
        costs or DEFAULT_COSTS, metric, seed=seed)  # fmt: skip


def _sgd(features, recipe_name, lr, epochs, seed, device) -> dict:
    from dataclasses import asdict

    import torch

    from sslkit.eval.common import summary
    from sslkit.eval.linear import feature_batches, new_classifier, resolve_recipe, train_probe
    from sslkit.eval.transfer import scores

    recipe = resolve_recipe(recipe_name, lr=lr, epochs=epochs)
    train, test = features["train"][0], features["test"][0]
    x = torch.from_numpy(train.features).float().to(device)
    y = torch.from_numpy(train.labels).to(device)
    test_x = torch.from_numpy(test.features).float().to(device)
    test_y = torch.from_numpy(test.labels).to(device)
    torch.manual_seed(seed)
    classifier = new_classifier(x.shape[1], len(features["train"][1])).to(device)
    state = train_probe(recipe, classifier, feature_batches(x, y, recipe.batch_size, seed),
                        test_x, test_y)  # fmt: skip
    with torch.no_grad():
        predictions = classifier(test_x).argmax(dim=1).cpu().numpy()
    return {"protocol": "sgd", "recipe": asdict(recipe), **summary(state.history),
            "mean_per_class": scores(predictions, test.labels).mean_per_class}  # fmt: skip


def _print(output: dict, json_path: str | None) -> None:
    from sslkit.commands.common import print_table

    result = output["result"]
    if result["protocol"] == "knn":
        rows = [[k, v["top1"], v["top5"]] for k, v in result["k"].items()]
        print_table(f"kNN transfer: best top-1 {result['best']['top1']:.2f} at "
                    f"k={result['best']['k']}", ["k", "top-1 %", "top-5 %"], rows,
                    to_stderr=json_path == "-")  # fmt: skip
        return
    rows = [["top-1 %", result["top1"]], ["mean per-class %", result["mean_per_class"]]]
    if "cost" in result:
        rows.append(["cost (validated)", result["cost"]])
    print_table(f"transfer ({output['task']}, {result['protocol']}) on "
                f"{len(output['classes'])} classes", ["", "value"], rows,
                to_stderr=json_path == "-")  # fmt: skip
