"""``sslkit.linear``: a linear classifier on a frozen encoder (or on feature files).

:func:`linear` gets the training data (cached features, or the images themselves for the
augmented protocol) and trains the probe; :func:`probe_features` runs the cached-feature
protocol on any pair of labelled feature sets, so other features (raw pixels, a randomly
initialised network) are probed the same way by calling it directly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sslkit.api.common import run_evaluation
from sslkit.api.results import LinearResult
from sslkit.errors import BadInput

PROBE_CHECKPOINT = "linear.pt"
MODES = ("augment", "features")


def linear(*, checkpoint: str | Path | None = None, data: str | None = None,
           train: str | Path | None = None, test: str | Path | None = None,
           mode: str = "augment", recipe: str = "pcl", lr: float | None = None,
           epochs: int | None = None, batch_size: int | None = None,
           weight_decay: float | None = None, schedule: str | None = None,
           milestones: Sequence[int] | None = None, layer: str = "backbone",
           arch: str | None = None, workdir: str | Path | None = None, resume: bool = False,
           force: bool = False, seed: int = 0, cache_dir: str | Path | None = None,
           no_cache: bool = False, num_workers: int = 0, download: bool = False,
           skip_bad_images: bool = False, device: str = "auto") -> LinearResult:  # fmt: skip
    """Train a linear classifier on a frozen encoder; top-1 / top-5 (%) on the test split.

    Give ``checkpoint`` and ``data`` (a labelled data spec), or ``train`` and ``test``
    feature files. ``mode="augment"`` runs crops and flips through the frozen backbone
    every epoch (the papers' protocol); ``"features"`` trains on cached, un-augmented
    features. ``recipe`` names the schedule (``pcl``, ``mocov2``, ...); ``lr``, ``epochs``,
    ... override its fields. With ``workdir`` the probe is checkpointed every epoch
    (``linear.pt``, continued by ``resume=True``) and the result written to ``linear.json``.

    Example::

        sslkit.linear(checkpoint="runs/hcsc/checkpoint.pt", data="digits", mode="features",
                      recipe="mocov2", epochs=30).top1
    """
    from sslkit.eval.linear import resolve_recipe

    by_files = train is not None or test is not None
    if by_files == (checkpoint is not None or data is not None):
        raise BadInput("give either --checkpoint and --data, or --train and --test feature files")
    if by_files and not (train and test):
        raise BadInput("both --train and --test feature files are needed")
    if not by_files and not (checkpoint and data):
        raise BadInput("both --checkpoint and --data are needed")
    if mode not in MODES:
        raise BadInput(f"unknown mode '{mode}': use augment or features")
    if by_files and mode == "augment":
        mode = "features"  # feature files hold no images to augment
    chosen = resolve_recipe(recipe, lr=lr, epochs=epochs, batch_size=batch_size,
                            weight_decay=weight_decay, schedule=schedule,
                            milestones=None if milestones is None else tuple(milestones))
    inputs = {"checkpoint": checkpoint, "data": data, "train": train, "test": test,
              "layer": layer, "arch": arch, "cache_dir": cache_dir, "no_cache": no_cache,
              "num_workers": num_workers, "download": download,
              "skip_bad_images": skip_bad_images}  # fmt: skip
    output, main = run_evaluation(
        "linear", workdir, PROBE_CHECKPOINT, resume, force, device,
        lambda env, folder: _run(env, chosen, mode, inputs, folder, resume, seed))
    return LinearResult(output, main_process=main)


def probe_features(train, test, recipe, *, seed: int = 0, device: Any = "cpu",
                   resume=None, on_epoch_end: Callable | None = None) -> dict[str, Any]:
    """The cached-feature probe of ``recipe`` (a ``LinearRecipe``) on two labelled feature
    sets (``features``, ``labels``); the JSON body without ``inputs``."""
    import torch

    from sslkit.eval.linear import feature_batches

    num_classes = _num_classes(train.labels, test.labels)
    train_x = torch.from_numpy(train.features[:]).float().to(device)
    train_y = torch.from_numpy(train.labels).to(device)
    batches = feature_batches(train_x, train_y, recipe.batch_size, seed)
    return _train(recipe, "features", batches, train_x.shape[1], num_classes, train, test,
                  seed, device, resume, on_epoch_end)[0]


def _run(env, recipe, mode: str, inputs: dict[str, Any], folder: Path | None, resume: bool,
         seed: int) -> dict[str, Any]:  # fmt: skip
    from dataclasses import asdict

    from sslkit.eval.common import load_state, save_state
    from sslkit.eval.linear import augmented_batches, check_unchanged, frozen_state

    device = env.device
    if inputs["train"]:
        from sslkit.features.store import read_feature_pair

        train, test, sources = read_feature_pair(inputs["train"], inputs["test"])
        backbone = dataset = size = None
    else:
        train, test, sources, backbone, dataset, size = _from_checkpoint(mode, device, inputs)
    meta = {"format": "sslkit.linear-probe", "recipe": asdict(recipe), "mode": mode,
            "encoder": sources["test"].get("checkpoint_sha256", "")}  # fmt: skip
    resume_state = load_state(folder / PROBE_CHECKPOINT, meta) if resume and folder else None

    def save(state) -> None:
        if folder is not None and env.is_main:
            save_state(folder / PROBE_CHECKPOINT, state, meta)

    if mode == "features":
        output = probe_features(train, test, recipe, seed=seed, device=device,
                                resume=resume_state, on_epoch_end=save)  # fmt: skip
    else:
        num_classes = _num_classes(dataset.labels, test.labels)
        before = frozen_state(backbone)
        batches = augmented_batches(backbone, dataset, size, dataset.info.mean, dataset.info.std,
                                    recipe.batch_size, seed, device,
                                    inputs["num_workers"])  # fmt: skip
        output, _ = _train(recipe, mode, batches, test.dim, num_classes, dataset, test, seed,
                           device, resume_state, save)  # fmt: skip
        check_unchanged(backbone, before)
    output["inputs"] = sources
    return output


def _train(recipe, mode: str, batches, dim: int, num_classes: int, train, test, seed: int,
           device, resume, on_epoch_end) -> tuple[dict[str, Any], Any]:  # fmt: skip
    """Train a new probe from ``batches``, test it every epoch; the JSON body."""
    from dataclasses import asdict

    import torch

    from sslkit.eval.common import summary
    from sslkit.eval.linear import new_classifier, train_probe

    test_x = torch.from_numpy(test.features[:]).float().to(device)
    test_y = torch.from_numpy(test.labels).to(device)
    torch.manual_seed(seed)  # here: a cache miss builds (and randomly initialises) a network
    classifier = new_classifier(dim, num_classes).to(device)
    state = train_probe(recipe, classifier, batches, test_x, test_y, resume=resume,
                        on_epoch_end=on_epoch_end)  # fmt: skip
    output = {"protocol": "linear", "mode": mode, "recipe": asdict(recipe),
              "num_classes": num_classes, "result": summary(state.history),
              "history": state.history}  # fmt: skip
    shots = _shot_groups(classifier, test_x, train.labels, test.labels, state.epochs_done)
    if shots is not None:
        output["shot_groups"] = shots
    return output, classifier


def _shot_groups(classifier, test_x, train_labels, test_labels, epoch: int) -> dict | None:
    """Many/medium/few-shot top-1 of the final probe, when the training split is long-tailed."""
    from sslkit.eval.linear import probe_logits
    from sslkit.eval.longtail import is_long_tailed, shot_accuracy

    if not is_long_tailed(train_labels, test_labels):
        return None
    predictions = probe_logits(classifier, test_x).topk(1, dim=1).indices[:, 0].cpu().numpy()
    return {"epoch": epoch, **shot_accuracy(train_labels, predictions, test_labels)}


def _from_checkpoint(mode: str, device, inputs: dict[str, Any]):
    """Cached features of both splits (``features``), or the training images and the test
    features (``augment``: the images are embedded anew every epoch)."""
    from sslkit.features.extract import load_feature_network
    from sslkit.features.service import eval_transform_for, load_dataset, split_features

    network = load_feature_network(str(inputs["checkpoint"]), inputs["layer"], inputs["arch"])
    splits = ("train", "test") if mode == "features" else ("test",)
    parts, sources = split_features(network, inputs["data"], splits, device,
                                    cache_dir=inputs["cache_dir"],
                                    use_cache=not inputs["no_cache"],
                                    download=inputs["download"], normalized=False,
                                    skip_bad_images=inputs["skip_bad_images"])  # fmt: skip
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
    backbone = network.network.to(device).eval()
    return dataset, test, sources, backbone, dataset, size


def _num_classes(train_labels, test_labels) -> int:
    if len(train_labels) == 0:
        raise BadInput("the training split is empty")
    if (train_labels < 0).any() or (test_labels < 0).any():
        raise BadInput("linear classification needs labels, but some images have none (-1)")
    return int(max(train_labels.max(), test_labels.max())) + 1
