"""``sslkit transfer``: frozen-feature transfer to another labelled image collection."""

from __future__ import annotations

import click

from sslkit.commands.common import debug_option, device_option, json_option
from sslkit.commands.knn import parse_ks

TASKS = ("imagefolder", "knn-transfer", "voc07", "places205")
FOLDER_TASKS = ("imagefolder", "knn-transfer")
ROOT_HINTS = {"voc07": "the folder holding VOCdevkit/VOC2007",
              "places205": "the folder holding trainvalsplit_places205/"}  # fmt: skip
DEFAULT_RECIPES = {"voc07": "voc07-hcsc", "places205": "places-hcsc"}


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


def parse_shots(_ctx, _param, value: str | None) -> tuple[int, ...] | None:
    """``"1,2,4,8,16"`` -> ``(1, 2, 4, 8, 16)`` (images per class of the low-shot SVM)."""
    if value is None:
        return None
    try:
        shots = tuple(int(part) for part in value.split(",") if part.strip())
    except ValueError:
        shots = ()
    if not shots or min(shots) <= 0:
        raise click.BadParameter("use comma-separated positive integers, e.g. 1,2,4,8,16")
    return shots


@click.command()
@click.option("--task", type=click.Choice(TASKS), required=True,
              help="imagefolder: linear classifier on frozen features; knn-transfer: "
                   "zero-shot weighted kNN (e.g. CUB-200-2011); voc07: PASCAL VOC 2007 "
                   "multi-label (SVM or linear layer); places205: Places205 (linear or SVM).")
@click.option("--checkpoint", required=True, type=click.Path(dir_okay=False),
              help="Encoder (sslkit, torchvision or MoCo/PCL/HCSC release).")
@click.option("--train", "train_dir", type=click.Path(file_okay=False), default=None,
              help="imagefolder/knn-transfer: training images, DIR/<class>/<image>.")
@click.option("--test", "test_dir", type=click.Path(file_okay=False), default=None,
              help="imagefolder/knn-transfer: test images, same class folders.")
@click.option("--val", "val_dir", type=click.Path(file_okay=False), default=None,
              help="Validation images for the cost (default: 20 % of --train, balanced).")
@click.option("--data", "data_root", type=click.Path(), default=None, metavar="ROOT",
              help="voc07/places205: the dataset root (VOCdevkit's parent, or the folder "
                   "with trainvalsplit_places205/).")
@click.option("--protocol", type=click.Choice(["lbfgs", "sgd", "svm"]), default=None,
              help="lbfgs: L2 logistic regression, cost chosen on validation (LoGo/SimCLR; "
                   "imagefolder default); sgd: a linear layer trained by SGD (voc07/places205 "
                   "default); svm: PCL's linear SVMs (voc07/places205).")
@click.option("--voc-protocol", type=click.Choice(["standard", "hcsc"]), default=None,
              help="voc07 --protocol sgd: standard (eval-mode BN, cached features, cosine, "
                   "per-class mAP; default) or hcsc (HCSC's script with its quirks).")
@click.option("--low-shot", "shots", default=None, callback=parse_shots, metavar="K,K,...",
              help="--protocol svm: images per class, e.g. 1,2,4,8,16 (default: all images).")
@click.option("--runs", type=click.IntRange(min=1), default=5, show_default=True,
              help="--low-shot: random draws per k (mean and std reported).")
@click.option("--cost", type=click.FloatRange(min=0, min_open=True), default=0.5,
              show_default=True, help="--protocol svm: the SVM's C.")
@click.option("--metric", type=click.Choice(["top1", "mean_per_class"]), default="top1",
              show_default=True, help="What the validation maximises (LoGo: per dataset).")
@click.option("--costs", default=None, callback=parse_costs,
              help="Inverse L2 strengths to try (default 1e-3 ... 1e3).")
@click.option("--recipe", default=None,
              help="--protocol sgd recipe (default: mocov2; voc07-hcsc for voc07, "
                   "places-hcsc for places205).")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None)
@click.option("--epochs", type=click.IntRange(min=1), default=None)
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Override the recipe's batch size.")
@click.option("--k", "ks", default="10,20,100,200", show_default=True, callback=parse_ks,
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
@device_option
@json_option
@debug_option
def transfer(task, checkpoint, train_dir, test_dir, val_dir, data_root, protocol, voc_protocol,
             shots, runs, cost, metric, costs, recipe, lr, epochs, batch_size, ks, temperature,
             image_size, layer, arch, cache_dir, no_cache, seed, device,
             json_path) -> None:  # fmt: skip
    """Transfer a frozen encoder: linear classifier, kNN, or VOC07 / Places205 protocols.

    \b
    Examples:
      sslkit transfer --task imagefolder --checkpoint ckpt.pt \\
          --train /data/pets/train --test /data/pets/test --metric mean_per_class
      sslkit transfer --task knn-transfer --checkpoint ckpt.pt \\
          --train /data/cub/train --test /data/cub/test --json -
      sslkit transfer --task voc07 --data /data/voc --protocol svm \\
          --low-shot 1,2,4,8,16 --checkpoint ckpt.pt
      sslkit transfer --task voc07 --data /data/voc --voc-protocol hcsc --checkpoint ckpt.pt
      sslkit transfer --task places205 --data /data/places205 --checkpoint ckpt.pt
    """
    import time

    from sslkit.distributed import choose_device
    from sslkit.eval.linear import resolve_recipe
    from sslkit.features.extract import load_feature_network
    from sslkit.utils.jsonout import write_json

    started = time.perf_counter()
    protocol = _check_inputs(task, train_dir, test_dir, val_dir, data_root, protocol,
                             voc_protocol, shots)  # fmt: skip
    recipe_name = recipe or DEFAULT_RECIPES.get(task, "mocov2")
    chosen = resolve_recipe(recipe_name, lr=lr, epochs=epochs, batch_size=batch_size)
    torch_device = choose_device(device)
    network = load_feature_network(checkpoint, layer, arch)
    use_cache = not no_cache
    if task == "voc07":
        from sslkit.eval.voc import run_voc07

        output = run_voc07(network, data_root, torch_device, protocol=protocol,
                           voc_protocol=voc_protocol or "standard", recipe=chosen,
                           image_size=image_size, cost=cost, shots=shots, runs=runs, seed=seed,
                           cache_dir=cache_dir, use_cache=use_cache)  # fmt: skip
    elif task == "places205":
        from sslkit.eval.places import run_places205

        output = run_places205(network, data_root, torch_device, protocol=protocol,
                               recipe=chosen, image_size=image_size, cost=cost, shots=shots,
                               runs=runs, seed=seed, cache_dir=cache_dir,
                               use_cache=use_cache)  # fmt: skip
    else:
        dirs = {"train": train_dir, "test": test_dir, **({"val": val_dir} if val_dir else {})}
        normalized = task == "knn-transfer"
        features, sources = _features(network, dirs, image_size, torch_device, cache_dir,
                                      use_cache, normalized)  # fmt: skip
        if task == "knn-transfer":
            result = _knn(features, ks, temperature, torch_device)
        elif protocol == "lbfgs":
            result = _lbfgs(features, costs, metric, seed)
        else:
            result = _sgd(features, chosen, seed, torch_device)
        output = {"task": task, "result": result, "inputs": sources,
                  "classes": list(features["train"][1])}  # fmt: skip
    output["seconds"] = round(time.perf_counter() - started, 3)
    _print(output, json_path)
    write_json(output, json_path)


def _check_inputs(task, train_dir, test_dir, val_dir, data_root, protocol, voc_protocol,
                  shots) -> str:  # fmt: skip
    """The options each task takes (one-line errors with the fix); the resolved protocol."""
    from sslkit.errors import BadInput

    if task in FOLDER_TASKS:
        if data_root is not None:
            raise BadInput(f"--data is for --task voc07 and places205: give --task {task} "
                           "--train DIR and --test DIR instead")  # fmt: skip
        if train_dir is None or test_dir is None:
            raise BadInput(f"--task {task} needs --train DIR and --test DIR "
                           "(folders of DIR/<class>/<image>)")  # fmt: skip
        if protocol == "svm" or shots is not None or voc_protocol is not None:
            raise BadInput("--protocol svm, --low-shot and --voc-protocol are for voc07 and "
                           f"places205: use --protocol lbfgs or sgd with {task}")  # fmt: skip
        return protocol or "lbfgs"
    if train_dir is not None or test_dir is not None or val_dir is not None:
        raise BadInput(f"--train/--test/--val are for imagefolder and knn-transfer: give "
                       f"--task {task} the dataset root with --data ROOT")  # fmt: skip
    if data_root is None:
        raise BadInput(f"--task {task} needs --data ROOT ({ROOT_HINTS[task]})")
    protocol = protocol or "sgd"
    if protocol == "lbfgs":
        raise BadInput(f"--task {task} takes --protocol sgd or svm (lbfgs is for imagefolder)")
    if shots is not None and protocol != "svm":
        raise BadInput("--low-shot draws training images for the SVM: add --protocol svm")
    if voc_protocol is not None and (task != "voc07" or protocol != "sgd"):
        raise BadInput("--voc-protocol chooses the voc07 linear layer: use it with "
                       "--task voc07 --protocol sgd")  # fmt: skip
    return protocol


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


def _sgd(features, recipe, seed, device) -> dict:
    from dataclasses import asdict

    import torch

    from sslkit.eval.common import summary
    from sslkit.eval.linear import feature_batches, new_classifier, train_probe
    from sslkit.eval.transfer import scores

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
