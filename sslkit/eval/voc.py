"""VOC07 multi-label classification on a frozen encoder (PCL's SVMs and HCSC's linear layer).

Metrics:

* :func:`voc_average_precision`: the VOC "all points" AP per class: rank by score,
  cumulative precision and recall, precision made non-increasing from the right, sum of
  Δrecall x precision; difficult (0) entries are ignored; mAP = mean over classes, x100.
* :func:`sample_average_precision`: HCSC's "mAP": the mean over *images* of scikit-learn's
  ``average_precision_score`` across the 20 classes of the image (0 without a positive).

Linear-layer protocols (a new ``fc``, weight ~ N(0, 0.01), bias 0; SGD momentum 0.9, no
weight decay, ``BCEWithLogits`` summed over the batch; train on ``train``, best epoch on
``val``, report on ``test``):

* ``standard``: eval-mode BN, so the frozen backbone's features never change and are
  taken from the feature cache (un-augmented, ``Resize(256/224 x size)`` ->
  ``CenterCrop(size)``, ImageNet statistics); cosine lr over all epochs; best epoch by
  per-class VOC mAP on val; test reports per-class mAP (difficult ignored) and the
  sample-wise metric.
* ``hcsc``: HCSC ``voc_cls/main.py`` with its quirks: the backbone in train mode (its BN
  running statistics adapt to VOC), augmented images through the backbone every epoch
  (``Resize((300, 300))``, brightness jitter or grayscale, flip 0.25, rotation 25°), VOC
  normalisation statistics, ``CosineAnnealingLR(T_max=12)`` stepped at the start of every
  epoch, best epoch by the sample-wise metric on val (``Resize(330)`` ->
  ``CenterCrop(300)``), test on ``FiveCrop(300)`` with logits averaged.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sslkit.data.base import ImageDataset
from sslkit.data.voc import VOC_CLASSES, VOC07Dataset
from sslkit.errors import BadInput
from sslkit.eval.linear import RECIPES, LinearRecipe, new_classifier

if TYPE_CHECKING:
    from sslkit.features.extract import FeatureNetwork

#: HCSC's VOC normalisation statistics (``voc_cls/main.py``).
VOC_MEAN = (0.457342265910642, 0.4387686270106377, 0.4073427106250871)
VOC_STD = (0.26753769276329037, 0.2638145880487105, 0.2776826934044154)
VOC_PROTOCOLS = ("standard", "hcsc")
HCSC_T_MAX = 12


@dataclass
class AveragePrecision:
    """Per-class AP in % (``None`` for a class without a positive) and their mean in %."""

    per_class: list[float | None]
    mean: float

    def as_dict(self) -> dict[str, Any]:
        """``{"map": ..., "per_class": {class: AP}}`` for JSON results."""
        count = len(self.per_class)
        names = VOC_CLASSES if count == len(VOC_CLASSES) else [str(c) for c in range(count)]
        return {"map": self.mean, "per_class": dict(zip(names, self.per_class, strict=True))}


def class_average_precision(scores: np.ndarray, targets: np.ndarray) -> float | None:
    """VOC "all points" AP (in [0, 1]) of one class; targets 1 / -1, 0 (difficult) ignored.

    ``None`` when no entry is positive. Tied scores keep their input order.
    """
    keep = targets != 0
    positive = targets[keep] > 0
    if not positive.any():
        return None
    hits = positive[np.argsort(-scores[keep], kind="stable")]
    true_pos = np.cumsum(hits)
    precision = true_pos / np.arange(1, len(hits) + 1)
    recall = true_pos / true_pos[-1]
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    return float(np.sum(np.diff(recall, prepend=0.0) * envelope))


def voc_average_precision(scores: np.ndarray, targets: np.ndarray) -> AveragePrecision:
    """Per-class VOC AP of ``N x C`` scores against ``N x C`` {1, 0, -1} targets, x100.

    The mean is over the classes with at least one positive (all 20 on VOC07).
    """
    scores, targets = np.asarray(scores, dtype=np.float64), np.asarray(targets)
    if scores.shape != targets.shape or scores.ndim != 2:
        raise ValueError("scores and targets must both be N x C")
    per_class = []
    for column in range(scores.shape[1]):
        ap = class_average_precision(scores[:, column], targets[:, column])
        per_class.append(None if ap is None else 100.0 * ap)
    known = [ap for ap in per_class if ap is not None]
    return AveragePrecision(per_class, float(np.mean(known)) if known else math.nan)


def sample_average_precision(scores: np.ndarray, positives: np.ndarray) -> float:
    """HCSC's metric, x100: mean over images of ``average_precision_score(row, scores)``.

    ``positives`` is the ``N x C`` multi-hot of non-difficult objects; an image without
    any positive scores 0 (scikit-learn's value), so it lowers the mean, as in HCSC.
    """
    from sklearn.metrics import average_precision_score

    total = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "No positive class found in y_true"
        for row_targets, row_scores in zip(positives, scores, strict=True):
            total += float(average_precision_score(row_targets, row_scores))
    return 100.0 * total / max(len(positives), 1)


def hcsc_lr(base_lr: float, epoch: int, t_max: int = HCSC_T_MAX) -> float:
    """The lr of 0-based ``epoch`` under HCSC's ``CosineAnnealingLR(T_max=12)`` stepped at
    the *start* of every epoch: ``base (1 + cos(pi (epoch + 1) / 12)) / 2`` (period 24)."""
    return base_lr * (1.0 + math.cos(math.pi * (epoch + 1) / t_max)) / 2.0


def _bce_step(classifier: nn.Module, optimizer: torch.optim.Optimizer, inputs: torch.Tensor,
              targets: torch.Tensor) -> float:  # fmt: skip
    """One SGD step on ``BCEWithLogits`` summed over the batch (HCSC); the loss value."""
    loss = F.binary_cross_entropy_with_logits(classifier(inputs), targets, reduction="sum")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.item())


def _sgd(recipe: LinearRecipe, classifier: nn.Module) -> torch.optim.SGD:
    return torch.optim.SGD(classifier.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                           weight_decay=recipe.weight_decay)  # fmt: skip


def _selection_value(value: float) -> float:
    return -math.inf if math.isnan(value) else value


def train_standard(train_x: torch.Tensor, train_targets: np.ndarray, val_x: torch.Tensor,
                   val_targets: np.ndarray, test_x: torch.Tensor, test_targets: np.ndarray,
                   recipe: LinearRecipe, seed: int = 0) -> dict[str, Any]:  # fmt: skip
    """The ``standard`` protocol on cached frozen features (rows of ``*_x``).

    ``*_targets`` are the ``N x 20`` {1, 0, -1} matrices; training targets are the
    multi-hot of the non-difficult positives. The recipe's lr schedule (cosine over all
    epochs for ``voc07-hcsc``) is set once per epoch.
    """
    from sslkit.eval.linear import feature_batches

    torch.manual_seed(seed)
    device = train_x.device
    classifier = new_classifier(train_x.shape[1], train_targets.shape[1]).to(device)
    optimizer = _sgd(recipe, classifier)
    positives = torch.from_numpy((train_targets == 1).astype(np.float32)).to(device)
    batches = feature_batches(train_x, positives, recipe.batch_size, seed)
    history, best_value, best_state = [], -math.inf, None
    for epoch in range(recipe.epochs):
        lr = recipe.lr_at(epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        classifier.train()
        total = sum(_bce_step(classifier, optimizer, x, y) for x, y in batches(epoch))
        val = voc_average_precision(_scores(classifier, val_x), val_targets).mean
        history.append({"epoch": epoch + 1, "lr": lr, "loss": total / len(train_x),
                        "val_map": val})  # fmt: skip
        if _selection_value(val) >= best_value:  # later ties win, like HCSC's ">="
            best_value, best_state = _selection_value(val), copy.deepcopy(classifier.state_dict())
    final = voc_average_precision(_scores(classifier, test_x), test_targets)
    classifier.load_state_dict(best_state)
    scores = _scores(classifier, test_x)
    test = voc_average_precision(scores, test_targets)
    best = max(history, key=lambda row: (_selection_value(row["val_map"]), row["epoch"]))
    return {**test.as_dict(), "sample_map": sample_average_precision(scores, test_targets == 1),
            "best": {"epoch": best["epoch"], "val_map": best["val_map"]},
            "final": {"epoch": recipe.epochs, "map": final.mean}, "history": history}  # fmt: skip


@torch.no_grad()
def _scores(classifier: nn.Module, inputs: torch.Tensor) -> np.ndarray:
    classifier.eval()
    return classifier(inputs).float().cpu().numpy()


def hcsc_train_view(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """HCSC's training augmentation of uint8 ``B x 3 x S x S`` (already ``Resize((S, S))``).

    Per image: one of {brightness in [0.8, 1.2], grayscale with p 0.25} chosen at random,
    horizontal flip with p 0.25, rotation by U(-25°, 25°) (nearest, black fill); then
    [0, 1] and VOC normalisation.
    """
    import torchvision.transforms.functional as TF

    from sslkit.data.views import normalize, to_float_rgb

    def draw() -> float:
        return float(torch.rand(1, generator=generator))

    out = []
    for image in images:
        if draw() < 0.5:
            image = TF.adjust_brightness(image, 0.8 + 0.4 * draw())
        elif draw() < 0.25:
            image = TF.rgb_to_grayscale(image, num_output_channels=3)
        if draw() < 0.25:
            image = TF.hflip(image)
        out.append(TF.rotate(image, -25.0 + 50.0 * draw()))
    return normalize(to_float_rgb(torch.stack(out)), VOC_MEAN, VOC_STD)


def _eval_crops(images: torch.Tensor, size: int, five: bool) -> list[torch.Tensor]:
    """``CenterCrop(size)`` (val) or the five ``FiveCrop(size)`` crops (test), normalised."""
    import torchvision.transforms.functional as TF

    from sslkit.data.views import normalize, to_float_rgb

    rgb = to_float_rgb(images)
    crops = TF.five_crop(rgb, [size, size]) if five else [TF.center_crop(rgb, [size, size])]
    return [normalize(crop, VOC_MEAN, VOC_STD) for crop in crops]


@torch.no_grad()
def _hcsc_scores(model: nn.Module, dataset: ImageDataset, size: int, five: bool,
                 device: torch.device, batch_size: int) -> np.ndarray:  # fmt: skip
    """Eval-mode logits of every image (averaged over the five crops for the test)."""
    from sslkit.data.loader import extraction_batches, iterate_images

    model.eval()
    parts = []
    for images, _ in iterate_images(dataset, extraction_batches(len(dataset), batch_size, 0, 1)):
        crops = _eval_crops(images.to(device), size, five)
        parts.append(torch.stack([model(crop) for crop in crops]).mean(dim=0).cpu())
    return torch.cat(parts).numpy()


def train_hcsc(backbone: nn.Module, train: VOC07Dataset, val: VOC07Dataset, test: VOC07Dataset,
               recipe: LinearRecipe, crop: int, seed: int,
               device: torch.device) -> dict[str, Any]:  # fmt: skip
    """The ``hcsc`` protocol: the frozen backbone trained through in train mode (BN moves).

    ``train`` holds ``crop``-squashed images; ``val`` / ``test`` hold squares of the
    ``Resize(330/300 x crop)`` side that the centre / five crops are cut from. The best
    epoch's classifier *and* BN statistics are tested, as HCSC saves the whole model.
    """
    from sslkit.data.loader import iterate_images

    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    backbone = copy.deepcopy(backbone).to(device)
    for param in backbone.parameters():
        param.requires_grad_(False)
    dim = getattr(backbone, "feature_dim", None) or _output_dim(backbone, crop, device)
    classifier = new_classifier(dim, len(VOC_CLASSES)).to(device)
    model = nn.Sequential(backbone, classifier)
    optimizer = _sgd(recipe, classifier)
    positives = torch.from_numpy(train.multi_hot())
    val_positives = val.multi_hot()
    history, best_value, best_state = [], -math.inf, None
    for epoch in range(recipe.epochs):
        lr = hcsc_lr(recipe.lr, epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        model.train()  # the quirk: BN running statistics adapt to VOC
        total = 0.0
        for images, index in iterate_images(train, _epoch_batches(len(train), recipe.batch_size,
                                                                  seed, epoch)):  # fmt: skip
            with torch.no_grad():
                features = backbone(hcsc_train_view(images, generator).to(device))
            total += _bce_step(classifier, optimizer, features, positives[index].to(device))
        scores = _hcsc_scores(model, val, crop, False, device, recipe.batch_size)
        val_value = sample_average_precision(scores, val_positives)
        history.append({"epoch": epoch + 1, "lr": lr, "loss": total / len(train),
                        "val_sample_map": val_value})  # fmt: skip
        if val_value >= best_value:  # HCSC: ">=" -- the last of equal epochs is kept
            best_value, best_state = val_value, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    scores = _hcsc_scores(model, test, crop, True, device, recipe.batch_size)
    best = max(history, key=lambda row: (row["val_sample_map"], row["epoch"]))
    return {"sample_map": sample_average_precision(scores, test.multi_hot()),
            **voc_average_precision(scores, test.targets).as_dict(),
            "best": {"epoch": best["epoch"], "val_sample_map": best["val_sample_map"]},
            "history": history}  # fmt: skip


def _epoch_batches(size: int, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """A seeded shuffle in batches, the last one partial (a DataLoader with shuffle=True);
    a trailing batch of one image is dropped (train-mode BN needs two values)."""
    order = np.random.default_rng([seed, epoch]).permutation(size)
    batches = [order[i : i + batch_size] for i in range(0, size, batch_size)]
    return [b for b in batches if len(b) > 1] or batches


@torch.no_grad()
def _output_dim(backbone: nn.Module, size: int, device: torch.device) -> int:
    backbone.eval()
    return int(backbone(torch.zeros(2, 3, size, size, device=device)).shape[1])


def feature_sizes(network: FeatureNetwork, image_size: int | None) -> tuple[int, int]:
    """``(crop, resize)`` of the frozen-feature view: ``Resize(256)`` -> ``CenterCrop(224)``
    scaled to the crop (``--image-size``, else the checkpoint's, else 224)."""
    view = network.trained_view()
    crop = int(image_size or (view.size if view else 224))
    return crop, round(crop * 256 / 224)


def frozen_features(network: FeatureNetwork, datasets: dict[str, ImageDataset],
                    device: torch.device, cache_dir: str | Path | None, use_cache: bool,
                    size: int, show_progress: bool = False,
                    ) -> tuple[dict[str, np.ndarray], dict[str, dict]]:  # fmt: skip
    """Un-normalised features of each split through the feature cache, and their sources:
    at ``size`` px, with the checkpoint's normalisation (sslkit) or the dataset's."""
    from sslkit.features.service import dataset_features, eval_transform_for

    features, sources = {}, {}
    for split, dataset in datasets.items():
        found, source = dataset_features(network, dataset, device, cache_dir=cache_dir,
                                         use_cache=use_cache, normalized=False,
                                         show_progress=show_progress,
                                         transform=eval_transform_for(network, dataset, size))
        if not np.array_equal(found.indices, np.arange(len(dataset))):
            raise BadInput(f"cached features of {split} are not in dataset order: "
                           "rerun with --no-cache")  # fmt: skip
        features[split], sources[split] = np.asarray(found.features, dtype=np.float32), source
    return features, sources


def run_voc07(network: FeatureNetwork, root: str | Path, device: torch.device, *,
              protocol: str = "sgd", voc_protocol: str = "standard",
              recipe: LinearRecipe | None = None, image_size: int | None = None,
              cost: float = 0.5, shots: Sequence[int] | None = None, runs: int = 5,
              seed: int = 0, cache_dir: str | Path | None = None,
              use_cache: bool = True, show_progress: bool = False) -> dict[str, Any]:  # fmt: skip
    """Load the VOC2007 splits under ``root`` and run one protocol: ``svm`` (PCL's), or the
    linear layer (``sgd``) with ``voc_protocol`` ``standard`` or ``hcsc`` (recipe
    ``voc07-hcsc`` unless given); the feature view is ``image_size`` px, else the
    checkpoint's. ``show_progress`` reports the extraction. Returns the command's JSON
    body."""
    from sslkit.eval.svm import voc_svm

    recipe = recipe or RECIPES["voc07-hcsc"]
    if protocol not in ("sgd", "svm"):
        raise BadInput(f"--task voc07 takes --protocol sgd or svm, not {protocol}")
    if voc_protocol not in VOC_PROTOCOLS:
        raise BadInput(f"unknown --voc-protocol '{voc_protocol}': use standard or hcsc")
    if protocol == "sgd" and voc_protocol == "hcsc":
        return _run_hcsc(network, root, device, recipe, image_size, seed)
    crop, resize = feature_sizes(network, image_size)
    splits = ("trainval", "test") if protocol == "svm" else ("train", "val", "test")
    datasets = {s: VOC07Dataset(root, s, crop, resize) for s in splits}
    _require_test_positives(datasets["test"])
    features, sources = frozen_features(network, datasets, device, cache_dir, use_cache, crop,
                                        show_progress)  # fmt: skip
    if protocol == "svm":
        train = datasets["trainval"]
        result = voc_svm(features["trainval"], train.targets, features["test"],
                         datasets["test"].targets, cost, shots, runs, seed)  # fmt: skip
    else:
        tensors = {s: torch.from_numpy(features[s]).to(device) for s in splits}
        result = {"protocol": "sgd", "voc_protocol": "standard", "recipe": asdict(recipe),
                  "metric": "mAP (per class, difficult ignored)",
                  **train_standard(tensors["train"], datasets["train"].targets, tensors["val"],
                                   datasets["val"].targets, tensors["test"],
                                   datasets["test"].targets, recipe, seed)}  # fmt: skip
    return task_output("voc07", network, result, sources, datasets, f"resize{resize}+crop{crop}")


def _run_hcsc(network: FeatureNetwork, root: str | Path, device: torch.device,
              recipe: LinearRecipe, image_size: int | None,
              seed: int) -> dict[str, Any]:  # fmt: skip
    if network.layer != "backbone":
        raise BadInput("--voc-protocol hcsc trains through the backbone: use --layer backbone")
    crop = int(image_size or 300)
    resize = round(crop * 330 / 300)
    datasets = {"train": VOC07Dataset(root, "train", crop, squash=True),
                "val": VOC07Dataset(root, "val", resize),
                "test": VOC07Dataset(root, "test", resize)}  # fmt: skip
    _require_test_positives(datasets["test"])
    transforms = {"train": f"squash{crop}+hcsc-augment", "val": f"resize{resize}+centercrop{crop}",
                  "test": f"resize{resize}+fivecrop{crop}"}  # fmt: skip
    sources = {split: {**network.provenance(), "dataset": ds.spec, "split": split,
                       "dataset_fingerprint": ds.fingerprint(), "cache_hit": False,
                       "transform": f"{transforms[split]}+normalize(mean={list(VOC_MEAN)},"
                                    f"std={list(VOC_STD)})"}
               for split, ds in datasets.items()}  # fmt: skip
    result = {"protocol": "sgd", "voc_protocol": "hcsc", "recipe": asdict(recipe),
              "schedule": f"CosineAnnealingLR(T_max={HCSC_T_MAX}) stepped per epoch",
              "metric": "sample-wise AP (HCSC)",
              **train_hcsc(network.network, datasets["train"], datasets["val"], datasets["test"],
                           recipe, crop, seed, device)}  # fmt: skip
    geometry = f"train squash{crop}, val/test resize{resize}+crop{crop}"
    return task_output("voc07", network, result, sources, datasets, geometry)


def _require_test_positives(test: VOC07Dataset) -> None:
    if not (test.targets == 1).any():
        raise BadInput(f"the VOC2007 test split under {test.voc} has no positive label: "
                       "check ImageSets/Main/<class>_test.txt")  # fmt: skip


def task_output(task: str, network: FeatureNetwork, result: dict, sources: dict, datasets: dict,
            geometry: str) -> dict[str, Any]:  # fmt: skip
    """The command's JSON body (``seconds`` is added by the command)."""
    return {"task": task, "result": _json_safe(result), "inputs": sources,
            "checkpoint_sha256": network.encoder.sha256, "image_geometry": geometry,
            "datasets": {split: ds.describe() for split, ds in datasets.items()},
            "classes": list(next(iter(datasets.values())).info.class_names)}  # fmt: skip


def _json_safe(value: Any) -> Any:
    """NaN (a metric with nothing to score) as ``None``, recursively."""
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
