"""``sslkit.transfer``: a frozen encoder on another labelled image collection.

Image folders (``imagefolder``: a linear classifier, by L-BFGS with a validated cost or by
SGD; ``knn-transfer``: zero-shot weighted kNN), PASCAL VOC 2007 (linear SVMs or a linear
layer, mAP) and Places205 (linear probe or SVMs, top-1). Frozen features go through the
feature cache.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from sslkit.api.knn import DEFAULT_KS
from sslkit.api.results import TransferResult
from sslkit.errors import BadInput

TASKS = ("imagefolder", "knn-transfer", "voc07", "places205")
FOLDER_TASKS = ("imagefolder", "knn-transfer")
ROOT_HINTS = {"voc07": "the folder holding VOCdevkit/VOC2007",
              "places205": "the folder holding trainvalsplit_places205/"}  # fmt: skip
DEFAULT_RECIPES = {"voc07": "voc07-hcsc", "places205": "places-hcsc"}


def transfer(task: str, checkpoint: str | Path, *, train: str | Path | None = None,
             test: str | Path | None = None, val: str | Path | None = None,
             data: str | Path | None = None, protocol: str | None = None,
             voc_protocol: str | None = None, low_shot: Sequence[int] | None = None,
             runs: int = 5, cost: float = 0.5, metric: str = "top1",
             costs: Sequence[float] | None = None, recipe: str | None = None,
             lr: float | None = None, epochs: int | None = None, batch_size: int | None = None,
             k: Sequence[int] = DEFAULT_KS, temperature: float = 0.07,
             image_size: int | None = None, layer: str = "backbone", arch: str | None = None,
             cache_dir: str | Path | None = None, no_cache: bool = False, seed: int = 0,
             device: str = "auto") -> TransferResult:  # fmt: skip
    """Score ``checkpoint``'s frozen encoder on ``task``.

    ``imagefolder`` / ``knn-transfer`` take ``train`` and ``test`` folders of
    ``DIR/<class>/<image>`` (``val``: the validation images of the cost, default a
    class-balanced 20 % of ``train``); ``voc07`` / ``places205`` take the dataset root as
    ``data``. ``protocol`` is ``lbfgs`` (image folders' default), ``sgd`` (a linear layer:
    ``recipe``, ``lr``, ``epochs``, ``batch_size``) or ``svm`` (``cost``, ``low_shot`` images
    per class over ``runs`` draws).

    Example::

        sslkit.transfer("imagefolder", "ckpt.pt", train="pets/train", test="pets/test")
    """
    from sslkit.distributed import choose_device
    from sslkit.eval.linear import resolve_recipe
    from sslkit.features.extract import load_feature_network

    started = time.perf_counter()
    if task not in TASKS:
        raise BadInput(f"unknown task '{task}': use {', '.join(TASKS)}")
    protocol = _check_inputs(task, train, test, val, data, protocol, voc_protocol, low_shot)
    chosen = resolve_recipe(recipe or DEFAULT_RECIPES.get(task, "mocov2"), lr=lr, epochs=epochs,
                            batch_size=batch_size)  # fmt: skip
    torch_device = choose_device(device)
    network = load_feature_network(str(checkpoint), layer, arch)
    use_cache = not no_cache
    shots = None if low_shot is None else tuple(low_shot)
    if task == "voc07":
        from sslkit.eval.voc import run_voc07

        output = run_voc07(network, data, torch_device, protocol=protocol,
                           voc_protocol=voc_protocol or "standard", recipe=chosen,
                           image_size=image_size, cost=cost, shots=shots, runs=runs, seed=seed,
                           cache_dir=cache_dir, use_cache=use_cache)  # fmt: skip
    elif task == "places205":
        from sslkit.eval.places import run_places205

        output = run_places205(network, data, torch_device, protocol=protocol,
                               recipe=chosen, image_size=image_size, cost=cost, shots=shots,
                               runs=runs, seed=seed, cache_dir=cache_dir,
                               use_cache=use_cache)  # fmt: skip
    else:
        dirs = {"train": train, "test": test, **({"val": val} if val else {})}
        features, sources = _features(network, dirs, image_size, torch_device, cache_dir,
                                      use_cache, normalized=task == "knn-transfer")  # fmt: skip
        if task == "knn-transfer":
            result = _knn(features, k, temperature, torch_device)
        elif protocol == "lbfgs":
            result = _lbfgs(features, costs, metric, seed)
        else:
            result = _sgd(features, chosen, seed, torch_device)
        output = {"task": task, "result": result, "inputs": sources,
                  "classes": list(features["train"][1])}  # fmt: skip
    output["seconds"] = round(time.perf_counter() - started, 3)
    return TransferResult(output)


def _check_inputs(task, train_dir, test_dir, val_dir, data_root, protocol, voc_protocol,
                  shots) -> str:  # fmt: skip
    """The options each task takes (one-line errors with the fix); the resolved protocol."""
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
