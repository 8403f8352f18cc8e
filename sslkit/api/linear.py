"""``sslkit.linear``: a linear classifier on a frozen encoder (or on feature files).

Two protocols. The default, with no ``recipe``: an L2 logistic regression on cached
features fitted by L-BFGS, its strength chosen on a class-balanced 20 % of the training
split, then refitted on all of it (the transfer protocol of LoGo and SimCLR): nothing to
tune, right on small and large data, seconds on small data. With a ``recipe`` (``pcl``,
``mocov2``, ...): the papers' SGD schedules, on augmented crops through the frozen backbone
(``mode="augment"``, their protocol) or on cached features. The output says which ran.

:func:`probe_features` runs either protocol on any pair of labelled feature sets, so other
features (raw pixels, a randomly initialised network) are probed the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sslkit.api.common import (
    baseline_features,
    check_baselines,
    check_encoder_choice,
    run_evaluation,
)
from sslkit.api.results import LinearResult
from sslkit.errors import BadInput

PROBE_CHECKPOINT = "linear.pt"
MODES = ("augment", "features")
LBFGS = "lbfgs-logistic"
LBFGS_DESCRIPTION = ("L2 logistic regression on cached features (L-BFGS), its cost chosen on "
                     "a class-balanced 20 % of the training split, refitted on all of it")
SGD_OPTIONS = ("lr", "epochs", "batch_size", "weight_decay", "schedule", "milestones")


def linear(*, checkpoint: str | Path | None = None, data: str | None = None,
           train_features: str | Path | None = None, test_features: str | Path | None = None,
           train_labels: str | Path | None = None, test_labels: str | Path | None = None,
           recipe: str | None = None, mode: str | None = None,
           costs: Sequence[float] | None = None, lr: float | None = None,
           epochs: int | None = None, batch_size: int | None = None,
           weight_decay: float | None = None, schedule: str | None = None,
           milestones: Sequence[int] | None = None, layer: str = "backbone",
           arch: str | None = None, workdir: str | Path | None = None, resume: bool = False,
           force: bool = False, seed: int = 0, cache_dir: str | Path | None = None,
           no_cache: bool = False, num_workers: int = 0, download: bool = False,
           skip_bad_images: bool = False, baselines: bool = False, encoder: str = "online",
           recompute_bn: int = 0, no_progress: bool = False,
           device: str = "auto") -> LinearResult:  # fmt: skip
    """Train a linear classifier on a frozen encoder; top-1 / top-5 (%) on the test split.

    Give ``checkpoint`` and ``data`` (a labelled data spec), or ``train_features`` and
    ``test_features`` files: sslkit feature files, or features of another tool (HDF5 files
    with a ``features`` dataset and ``labels``, or ``.npy`` arrays whose labels come from the
    ``.npy`` files ``train_labels`` and ``test_labels``; ``notes`` says their provenance is
    unknown). Without ``recipe``: the validated L-BFGS logistic regression on
    cached features (``costs``: the L2 costs tried, default 1e-3 ... 1e3). With ``recipe``
    (``pcl``, ``mocov2``, ``adco``, ``conic``, ``simsiam-lars``): its SGD schedule, whose
    fields ``lr``, ``epochs``, ... override, on crops and flips through the frozen backbone
    (``mode="augment"``, the default with a recipe and a checkpoint) or on cached features
    (``"features"``); ``workdir`` then checkpoints the probe every epoch (``linear.pt``,
    continued by ``resume=True``). ``workdir`` receives ``linear.json`` either way.
    ``baselines`` adds the same probe on the raw pixels and on the checkpoint's
    architecture at its random initialisation (``baselines.raw_pixels``,
    ``baselines.random_init``; cached features only, so not with ``mode="augment"``).
    ``encoder`` and ``recompute_bn``: which backbone embeds the images, and BatchNorm
    statistics recomputed on clean training images (see :func:`sslkit.knn`).

    Example::

        sslkit.linear(checkpoint="runs/hcsc/checkpoint.pt", data="digits").top1
    """
    from sslkit.eval.linear import resolve_recipe

    by_files = train_features is not None or test_features is not None
    if by_files == (checkpoint is not None or data is not None):
        raise BadInput("give either --checkpoint and --data, or --train-features and "
                       "--test-features")  # fmt: skip
    if by_files and not (train_features and test_features):
        raise BadInput("both --train-features and --test-features are needed")
    if not by_files and not (checkpoint and data):
        raise BadInput("both --checkpoint and --data are needed")
    if (train_labels is not None or test_labels is not None) and not by_files:
        raise BadInput("--train-labels and --test-labels label feature files of another tool: "
                       "give them with --train-features and --test-features")  # fmt: skip
    check_encoder_choice(by_files, encoder, recompute_bn)
    if baselines:
        check_baselines(by_files, layer)
    if mode is not None and mode not in MODES:
        raise BadInput(f"unknown mode '{mode}': use augment or features")
    sgd = {"lr": lr, "epochs": epochs, "batch_size": batch_size, "weight_decay": weight_decay,
           "schedule": schedule, "milestones": None if milestones is None else tuple(milestones)}
    if recipe is None:
        given = [f"--{name.replace('_', '-')}" for name in SGD_OPTIONS if sgd[name] is not None]
        if given or mode == "augment":
            what = ", ".join(given + (["--mode augment"] if mode == "augment" else []))
            raise BadInput(f"{what} set an SGD recipe's schedule: add --recipe (pcl is the "
                           "papers' protocol) or drop them for the validated L-BFGS probe")
        chosen, mode = None, "features"
    else:
        if costs is not None:
            raise BadInput("--costs are the L-BFGS probe's: drop --recipe, or drop --costs")
        chosen = resolve_recipe(recipe, **sgd)
        mode = "features" if by_files else (mode or "augment")
    if baselines and mode == "augment":
        raise BadInput("--baselines probes cached features: add --mode features (or drop "
                       "--recipe for the default probe)")  # fmt: skip
    inputs = {"checkpoint": checkpoint, "data": data, "train": train_features,
              "test": test_features, "train_labels": train_labels, "test_labels": test_labels,
              "layer": layer, "arch": arch, "cache_dir": cache_dir,
              "no_cache": no_cache, "num_workers": num_workers, "download": download,
              "skip_bad_images": skip_bad_images, "costs": costs, "baselines": baselines,
              "encoder": encoder, "recompute_bn": recompute_bn,
              "show_progress": not no_progress}  # fmt: skip
    output, main = run_evaluation(
        "linear", workdir, PROBE_CHECKPOINT, resume, force, device,
        lambda env, folder: _run(env, chosen, mode, inputs, folder, resume, seed))
    return LinearResult(output, main_process=main)


def probe_features(train, test, recipe=None, *, costs: Sequence[float] | None = None,
                   seed: int = 0, device: Any = "cpu", show_progress: bool = False,
                   resume=None, on_epoch_end: Callable | None = None) -> dict[str, Any]:
    """A linear probe on two labelled feature sets (``features``, ``labels``): the validated
    L-BFGS logistic regression (``recipe=None``) or the cached-feature SGD probe of
    ``recipe`` (a ``LinearRecipe``); the JSON body without ``inputs``."""
    import torch

    num_classes = _num_classes(train.labels, test.labels)
    if recipe is None:
        return _lbfgs(train, test, num_classes, costs, seed, device, show_progress)
    from sslkit.eval.linear import feature_batches

    train_x = torch.from_numpy(train.features[:]).float().to(device)
    train_y = torch.from_numpy(train.labels).to(device)
    batches = feature_batches(train_x, train_y, recipe.batch_size, seed)
    return _train(recipe, "features", batches, train_x.shape[1], num_classes, train, test,
                  seed, device, resume, on_epoch_end, show_progress)  # fmt: skip


def _lbfgs(train, test, num_classes: int, costs, seed: int, device,
           show_progress: bool) -> dict[str, Any]:  # fmt: skip
    """The validated logistic regression and its JSON body."""
    from sslkit.eval.transfer import DEFAULT_COSTS, validated_logistic
    from sslkit.utils.progress import progress

    costs = tuple(costs or DEFAULT_COSTS)
    with progress("linear probe (L-BFGS)", len(costs) + 1, unit="fits",
                  enabled=show_progress) as shown:  # fmt: skip
        result, predictions = validated_logistic(
            train.features[:], train.labels, test.features[:], test.labels, costs=costs,
            seed=seed, device=device, on_fit=lambda cost: shown.update(advance=1, cost=cost))
    output = {"protocol": LBFGS, "description": LBFGS_DESCRIPTION, "mode": "features",
              "num_classes": num_classes, "result": result, "score_unit": "percent"}  # fmt: skip
    shots = _shot_groups(predictions, train.labels, test.labels, None)
    if shots is not None:
        output["shot_groups"] = shots
    return output


def _run(env, recipe, mode: str, inputs: dict[str, Any], folder: Path | None, resume: bool,
         seed: int) -> dict[str, Any]:  # fmt: skip
    from dataclasses import asdict

    from sslkit.eval.common import load_state, save_state
    from sslkit.eval.linear import augmented_batches, check_unchanged, frozen_state

    device = env.device
    show = inputs["show_progress"] and env.is_main
    notes: list[str] = []
    if inputs["train"]:
        from sslkit.api.common import need_labels
        from sslkit.features.store import read_any_feature_pair

        train, test, sources = read_any_feature_pair(inputs["train"], inputs["test"],
                                                     inputs["train_labels"],
                                                     inputs["test_labels"])  # fmt: skip
        notes = need_labels("linear classification", (train, test),
                            (inputs["train"], inputs["test"]))  # fmt: skip
        backbone = dataset = size = None
    else:
        train, test, sources, backbone, dataset, size = _from_checkpoint(mode, device, inputs,
                                                                         show)  # fmt: skip
    if recipe is None:
        output = probe_features(train, test, costs=inputs["costs"], seed=seed, device=device,
                                show_progress=show)  # fmt: skip
        output["inputs"], output["notes"] = sources, notes
        return _with_baselines(output, recipe, inputs, seed, device, show)
    meta = {"format": "sslkit.linear-probe", "recipe": asdict(recipe), "mode": mode,
            "encoder": sources["test"].get("checkpoint_sha256", "")}  # fmt: skip
    resume_state = load_state(folder / PROBE_CHECKPOINT, meta) if resume and folder else None

    def save(state) -> None:
        if folder is not None and env.is_main:
            save_state(folder / PROBE_CHECKPOINT, state, meta)

    if mode == "features":
        output = probe_features(train, test, recipe, seed=seed, device=device, resume=resume_state,
                                on_epoch_end=save, show_progress=show)  # fmt: skip
        output["inputs"], output["notes"] = sources, notes
        return _with_baselines(output, recipe, inputs, seed, device, show)
    else:
        num_classes = _num_classes(dataset.labels, test.labels)
        before = frozen_state(backbone)
        batches = augmented_batches(backbone, dataset, size, dataset.info.mean, dataset.info.std,
                                    recipe.batch_size, seed, device,
                                    inputs["num_workers"])  # fmt: skip
        output = _train(recipe, mode, batches, test.dim, num_classes, dataset, test, seed,
                        device, resume_state, save, show)  # fmt: skip
        check_unchanged(backbone, before)
    output["inputs"], output["notes"] = sources, notes
    return output


def _with_baselines(output: dict[str, Any], recipe, inputs: dict[str, Any], seed: int, device,
                    show: bool) -> dict[str, Any]:  # fmt: skip
    """``output`` with the same probe on the raw pixels and the random initialisation."""
    if not inputs["baselines"]:
        return output
    output["baselines"] = {}
    for kind in ("raw_pixels", "random_init"):
        train, test, sources = baseline_features(
            inputs["checkpoint"], inputs["data"], ("train", "test"), kind, arch=inputs["arch"],
            cache_dir=inputs["cache_dir"], no_cache=inputs["no_cache"],
            download=inputs["download"], skip_bad_images=inputs["skip_bad_images"],
            device=device, normalized=False, show_progress=show,
            recompute_bn=inputs["recompute_bn"])
        reference = probe_features(train, test, recipe, costs=inputs["costs"], seed=seed,
                                   device=device, show_progress=show)  # fmt: skip
        output["baselines"][kind] = {**reference, "inputs": sources}
    return output


def _train(recipe, mode: str, batches, dim: int, num_classes: int, train, test, seed: int,
           device, resume, on_epoch_end, show_progress: bool) -> dict[str, Any]:  # fmt: skip
    """Train a new SGD probe from ``batches``, test it every epoch; the JSON body."""
    from dataclasses import asdict

    import torch

    from sslkit.distributed import world_size
    from sslkit.eval.common import summary
    from sslkit.eval.linear import new_classifier, probe_logits, train_probe
    from sslkit.utils.progress import progress

    test_x = torch.from_numpy(test.features[:]).float().to(device)
    test_y = torch.from_numpy(test.labels).to(device)
    torch.manual_seed(seed)  # here: a cache miss builds (and randomly initialises) a network
    classifier = new_classifier(dim, num_classes).to(device)
    if mode == "augment":  # full batches of this process's share (the remainder is dropped)
        per_rank = max(1, recipe.batch_size // world_size())
        per_epoch = len(train.labels) // (per_rank * world_size()) * per_rank
    else:
        per_epoch = len(train.labels)
    done = resume.epochs_done if resume is not None else 0
    with progress(f"linear probe ({mode}, recipe {recipe.name})", recipe.epochs * per_epoch,
                  enabled=show_progress) as shown:  # fmt: skip
        shown.update(completed=done * per_epoch)

        def report(images: int, loss: float, lr: float, epoch: int) -> None:
            shown.update(advance=images, images=images, epoch=f"{epoch + 1}/{recipe.epochs}",
                         loss=loss, lr=lr)  # fmt: skip

        state = train_probe(recipe, classifier, batches, test_x, test_y, resume=resume,
                            on_epoch_end=on_epoch_end, on_batch=report)  # fmt: skip
    output = {"protocol": "sgd", "description": f"SGD recipe {recipe.name}, {mode}",
              "mode": mode, "recipe": asdict(recipe), "num_classes": num_classes,
              "result": summary(state.history), "history": state.history,
              "score_unit": "percent"}  # fmt: skip
    predictions = probe_logits(classifier, test_x).argmax(dim=1).cpu().numpy()
    shots = _shot_groups(predictions, train.labels, test.labels, state.epochs_done)
    if shots is not None:
        output["shot_groups"] = shots
    return output


def _shot_groups(predictions, train_labels, test_labels, epoch: int | None) -> dict | None:
    """Many/medium/few-shot top-1 of the final probe, when the training split is long-tailed."""
    from sslkit.eval.longtail import is_long_tailed, shot_accuracy

    if not is_long_tailed(train_labels, test_labels):
        return None
    shots = shot_accuracy(train_labels, predictions, test_labels)
    return shots if epoch is None else {"epoch": epoch, **shots}


def _from_checkpoint(mode: str, device, inputs: dict[str, Any], show_progress: bool):
    """Cached features of both splits (``features``), or the training images and the test
    features (``augment``: the images are embedded anew every epoch)."""
    from sslkit.features.extract import load_feature_network
    from sslkit.features.service import (
        eval_transform_for,
        feature_module,
        load_dataset,
        split_features,
    )

    network = load_feature_network(str(inputs["checkpoint"]), inputs["layer"], inputs["arch"],
                                   inputs["encoder"], inputs["recompute_bn"], inputs["data"])
    splits = ("train", "test") if mode == "features" else ("test",)
    parts, sources = split_features(network, inputs["data"], splits, device,
                                    cache_dir=inputs["cache_dir"],
                                    use_cache=not inputs["no_cache"],
                                    download=inputs["download"], normalized=False,
                                    skip_bad_images=inputs["skip_bad_images"],
                                    show_progress=show_progress)  # fmt: skip
    test = parts[-1]
    if mode == "features":
        return parts[0], test, sources, None, None, None
    dataset = load_dataset(inputs["data"], "train", network, inputs["download"],
                           inputs["skip_bad_images"])  # fmt: skip
    size = eval_transform_for(network, dataset).size
    sources["train"] = {**network.provenance(), "dataset": dataset.spec, "split": "train",
                        "dataset_fingerprint": dataset.fingerprint(), "augmented": True,
                        "transform": f"random-resized-crop{size}(0.08-1)+flip",
                        "skipped_images": list(dataset.skipped_images)}  # fmt: skip
    backbone = feature_module(network, device).eval()
    return dataset, test, sources, backbone, dataset, size


def _num_classes(train_labels, test_labels) -> int:
    if len(train_labels) == 0:
        raise BadInput("the training split is empty")
    if (train_labels < 0).any() or (test_labels < 0).any():
        raise BadInput("linear classification needs labels, but some images have none (-1)")
    return int(max(train_labels.max(), test_labels.max())) + 1
