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


def transfer(task: str, checkpoint: str | Path, *, train_images: str | Path | None = None,
             test_images: str | Path | None = None, val_images: str | Path | None = None,
             data_root: str | Path | None = None, protocol: str | None = None,
             voc_protocol: str | None = None, low_shot: Sequence[int] | None = None,
             runs: int = 5, cost: float = 0.5, metric: str = "top1",
             costs: Sequence[float] | None = None, recipe: str | None = None,
             lr: float | None = None, epochs: int | None = None, batch_size: int | None = None,
             k: Sequence[int] = DEFAULT_KS, temperature: float = 0.07,
             image_size: int | None = None, layer: str = "backbone", arch: str | None = None,
             cache_dir: str | Path | None = None, no_cache: bool = False, seed: int = 0,
             no_progress: bool = False, device: str = "auto") -> TransferResult:  # fmt: skip
    """Score ``checkpoint``'s frozen encoder on ``task``.

    ``imagefolder`` / ``knn-transfer`` take ``train_images`` and ``test_images`` folders of
    ``DIR/<class>/<image>`` (``val_images``: the validation images of the cost, default a
    class-balanced 20 % of the training images); ``voc07`` / ``places205`` take the dataset
    root as ``data_root``. ``protocol`` is ``lbfgs`` (image folders' default), ``sgd`` (a
    linear layer: ``recipe``, ``lr``, ``epochs``, ``batch_size``) or ``svm`` (``cost``,
    ``low_shot`` images per class over ``runs`` draws). Images are embedded at the size and
    with the normalisation the checkpoint was trained with (sslkit checkpoints; else 224 px
    and ImageNet statistics) unless ``image_size`` is given. Scores are in %.

    Example::

        sslkit.transfer("imagefolder", "ckpt.pt", train_images="pets/train",
                        test_images="pets/test")
    """
    from sslkit.distributed import choose_device
    from sslkit.eval.linear import resolve_recipe
    from sslkit.features.extract import load_feature_network

    started = time.perf_counter()
    if task not in TASKS:
        raise BadInput(f"unknown task '{task}': use {', '.join(TASKS)}")
    protocol = _check_inputs(task, train_images, test_images, val_images, data_root, protocol,
                             voc_protocol, low_shot)  # fmt: skip
    show = not no_progress
    chosen = resolve_recipe(recipe or DEFAULT_RECIPES.get(task, "mocov2"), lr=lr, epochs=epochs,
                            batch_size=batch_size)  # fmt: skip
    torch_device = choose_device(device)
    network = load_feature_network(str(checkpoint), layer, arch)
    use_cache = not no_cache
    shots = None if low_shot is None else tuple(low_shot)
    if task == "voc07":
        from sslkit.eval.voc import run_voc07

        output = run_voc07(network, data_root, torch_device, protocol=protocol,
                           voc_protocol=voc_protocol or "standard", recipe=chosen,
                           image_size=image_size, cost=cost, shots=shots, runs=runs, seed=seed,
                           cache_dir=cache_dir, use_cache=use_cache,
                           show_progress=show)  # fmt: skip
    elif task == "places205":
        from sslkit.eval.places import run_places205

        output = run_places205(network, data_root, torch_device, protocol=protocol,
                               recipe=chosen, image_size=image_size, cost=cost, shots=shots,
                               runs=runs, seed=seed, cache_dir=cache_dir,
                               use_cache=use_cache, show_progress=show)  # fmt: skip
    else:
        dirs = {"train": train_images, "test": test_images,
                **({"val": val_images} if val_images else {})}  # fmt: skip
        features, sources = _features(network, dirs, image_size, torch_device, cache_dir,
                                      use_cache, task == "knn-transfer", show)  # fmt: skip
        if task == "knn-transfer":
            result = _knn(features, k, temperature, torch_device)
        elif protocol == "lbfgs":
            result = _lbfgs(features, costs, metric, seed, torch_device, show)
        else:
            result = _sgd(features, chosen, seed, torch_device, show)
        output = {"task": task, "result": result, "inputs": sources,
                  "classes": list(features["train"][1])}  # fmt: skip
    output["seconds"] = round(time.perf_counter() - started, 3)
    output["score_unit"] = "percent"
    return TransferResult(output)


def _check_inputs(task, train_dir, test_dir, val_dir, data_root, protocol, voc_protocol,
                  shots) -> str:  # fmt: skip
    """The options each task takes (one-line errors with the fix); the resolved protocol."""
    if task in FOLDER_TASKS:
        if data_root is not None:
            raise BadInput(f"--data-root is for --task voc07 and places205: give --task {task} "
                           "--train-images DIR and --test-images DIR instead")  # fmt: skip
        if train_dir is None or test_dir is None:
            raise BadInput(f"--task {task} needs --train-images DIR and --test-images DIR "
                           "(folders of DIR/<class>/<image>)")  # fmt: skip
        if protocol == "svm" or shots is not None or voc_protocol is not None:
            raise BadInput("--protocol svm, --low-shot and --voc-protocol are for voc07 and "
                           f"places205: use --protocol lbfgs or sgd with {task}")  # fmt: skip
        return protocol or "lbfgs"
    if train_dir is not None or test_dir is not None or val_dir is not None:
        raise BadInput(f"--train-images/--test-images/--val-images are for imagefolder and "
                       f"knn-transfer: give --task {task} the dataset root with --data-root "
                       "ROOT")  # fmt: skip
    if data_root is None:
        raise BadInput(f"--task {task} needs --data-root ROOT ({ROOT_HINTS[task]})")
    protocol = protocol or "sgd"
    if protocol == "lbfgs":
        raise BadInput(f"--task {task} takes --protocol sgd or svm (lbfgs is for imagefolder)")
    if shots is not None and protocol != "svm":
        raise BadInput("--low-shot draws training images for the SVM: add --protocol svm")
    if voc_protocol is not None and (task != "voc07" or protocol != "sgd"):
        raise BadInput("--voc-protocol chooses the voc07 linear layer: use it with "
                       "--task voc07 --protocol sgd")  # fmt: skip
    return protocol


def _features(network, dirs, image_size, device, cache_dir, use_cache, normalized,
              show_progress):  # fmt: skip
    """Per split: (FeatureSet, class names), through the feature cache; classes must agree.

    The images are embedded at the size and with the normalisation the checkpoint was
    trained with (an sslkit checkpoint; else 224 px and the folders' ImageNet statistics),
    unless ``image_size`` says otherwise.
    """
    from sslkit.data.sources import ImageFolderDataset
    from sslkit.features.service import dataset_features, eval_transform_for

    view = network.trained_view()
    size = image_size or (view.size if view else 224)
    out, sources = {}, {}
    for split, folder in dirs.items():
        root = Path(folder).expanduser()
        dataset = ImageFolderDataset(root, split if split != "val" else "test",
                                     f"imagefolder:{root}", size)  # fmt: skip
        features, source = dataset_features(
            network, dataset, device, use_cache=use_cache, cache_dir=cache_dir,
            normalized=normalized, show_progress=show_progress,
            transform=eval_transform_for(network, dataset, size))  # fmt: skip
        out[split] = (features, dataset.info.class_names)
        sources[split] = source
    for split in dirs:
        if out[split][1] != out["train"][1]:
            raise BadInput(f"--{split}-images has other class folders than --train-images: "
                           "use the same class names in every split")  # fmt: skip
    return out, sources


def _knn(features, ks, temperature, device) -> dict:
    from sslkit.eval.knn import knn_classify

    train, test = features["train"][0], features["test"][0]
    result = knn_classify(train.features, train.labels, test.features, test.labels, ks,
                          temperature, device)  # fmt: skip
    return {"protocol": "knn", **result.as_dict()}


def _lbfgs(features, costs, metric, seed, device, show_progress: bool) -> dict:
    from sslkit.eval.transfer import DEFAULT_COSTS, validated_logistic
    from sslkit.utils.progress import progress

    train, test = features["train"][0], features["test"][0]
    val = features.get("val", (None,))[0]
    costs = tuple(costs or DEFAULT_COSTS)
    with progress("transfer: L-BFGS logistic regression", len(costs) + 1, unit="fits",
                  enabled=show_progress) as shown:  # fmt: skip
        result, _ = validated_logistic(
            train.features, train.labels, test.features, test.labels,
            None if val is None else val.features, None if val is None else val.labels,
            costs, metric, seed=seed, device=device,
            on_fit=lambda cost: shown.update(advance=1, cost=cost))  # fmt: skip
    return result


def _sgd(features, recipe, seed, device, show_progress: bool) -> dict:
    from dataclasses import asdict

    import torch

    from sslkit.eval.common import summary
    from sslkit.eval.linear import feature_batches, new_classifier, train_probe
    from sslkit.eval.transfer import scores
    from sslkit.utils.progress import progress

    train, test = features["train"][0], features["test"][0]
    x = torch.from_numpy(train.features).float().to(device)
    y = torch.from_numpy(train.labels).to(device)
    test_x = torch.from_numpy(test.features).float().to(device)
    test_y = torch.from_numpy(test.labels).to(device)
    torch.manual_seed(seed)
    classifier = new_classifier(x.shape[1], len(features["train"][1])).to(device)
    with progress(f"transfer: SGD recipe {recipe.name}", recipe.epochs, unit="epochs",
                  enabled=show_progress) as shown:  # fmt: skip
        state = train_probe(recipe, classifier, feature_batches(x, y, recipe.batch_size, seed),
                            test_x, test_y, on_epoch_end=lambda state: shown.update(
                                completed=state.epochs_done, loss=state.history[-1]["loss"]))
    with torch.no_grad():
        predictions = classifier(test_x).argmax(dim=1).cpu().numpy()
    return {"protocol": "sgd", "recipe": asdict(recipe), **summary(state.history),
            "mean_per_class": scores(predictions, test.labels).mean_per_class}  # fmt: skip
