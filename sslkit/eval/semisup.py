"""Semi-supervised fine-tuning with 1 % or 10 % of the labels (HCSC, PCL, CLD).

The encoder and a new linear head are trained together (BatchNorm in train mode) on a
labelled subset of the training split: class-balanced and drawn with a fixed seed, or read
from a file in the format of the released ``1percent.txt`` / ``10percent.txt`` (one image
file name per line). Random-resized crops (0.08-1) and flips for training; the
un-augmented evaluation view of the whole test split for testing, every image counted once.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sslkit.errors import BadInput
from sslkit.eval.common import (
    Accuracy,
    TrainState,
    accuracy,
    augmentation_generator,
    epoch_lr_factor,
)


@dataclass(frozen=True)
class SemisupRecipe:
    """One fine-tuning schedule: SGD with a trunk lr and a head lr, set once per epoch."""

    name: str
    epochs: int
    backbone_lr: float
    head_lr: float
    milestones: tuple[int, ...]
    gamma: float
    weight_decay: float
    head_lr_one_percent: float | None = None  # PCL: a larger head lr with 1 % of labels
    momentum: float = 0.9
    batch_size: int = 256

    def head_lr_for(self, fraction: float) -> float:
        """The head lr for a labelled fraction (PCL uses 1.0 at 1 %, 0.1 at 10 %)."""
        if self.head_lr_one_percent is not None and fraction <= 0.01 + 1e-9:
            return self.head_lr_one_percent
        return self.head_lr

    def factor_at(self, epoch: int) -> float:
        """Step-decay multiplier of 0-based ``epoch``."""
        return epoch_lr_factor(self.epochs, "step", self.milestones, self.gamma, epoch)


#: The recipes of HCSC's code, PCL App. E and CLD / OpenSelfSup.
RECIPES: dict[str, SemisupRecipe] = {
    "hcsc": SemisupRecipe("hcsc", epochs=70, backbone_lr=0.005, head_lr=0.02,
                          milestones=(30, 60), gamma=0.1, weight_decay=0.0),
    "pcl": SemisupRecipe("pcl", epochs=20, backbone_lr=0.01, head_lr=0.1,
                         head_lr_one_percent=1.0, milestones=(12, 16), gamma=0.2,
                         weight_decay=5e-4),
    "cld": SemisupRecipe("cld", epochs=20, backbone_lr=0.01, head_lr=1.0,
                         milestones=(12, 16), gamma=0.2, weight_decay=1e-4),
}  # fmt: skip


def resolve_recipe(name: str, **overrides: Any) -> SemisupRecipe:
    """A named recipe with the given fields replaced (``None`` values are ignored)."""
    if name not in RECIPES:
        raise BadInput(f"unknown semisup recipe '{name}': known are {', '.join(RECIPES)}")
    recipe = replace(RECIPES[name], **{k: v for k, v in overrides.items() if v is not None})
    if recipe.epochs <= 0 or recipe.backbone_lr < 0 or recipe.head_lr <= 0:
        raise BadInput("epochs and the head lr must be positive, the backbone lr >= 0")
    return recipe


def balanced_subset(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of ``round(fraction x n_c)`` images (at least 1) of every class c.

    Reproducible: the draw depends only on ``seed`` and the labels.
    """
    if not 0 < fraction <= 1:
        raise BadInput(f"--labels {fraction:g} is not a fraction in (0, 1]: use e.g. 0.01 or 0.1")
    rng = np.random.default_rng(seed)
    chosen = []
    for label in np.unique(labels[labels >= 0]):
        members = np.flatnonzero(labels == label)
        count = max(1, int(round(fraction * len(members))))
        chosen.append(rng.permutation(members)[:count])
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


def subset_from_file(dataset, path: str | Path) -> np.ndarray:
    """Indices of the images a subset file names (``1percent.txt`` format).

    One entry per line: an image file name matched against the dataset's file names
    (image folders), or an integer index into the split (any dataset).
    """
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"subset file {path} not found: pass a list of image names, one per line")
    entries = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not entries:
        raise BadInput(f"subset file {path} is empty")
    if all(entry.isdigit() for entry in entries):
        indices = np.asarray(sorted({int(entry) for entry in entries}), dtype=np.int64)
        if indices.max() >= len(dataset):
            raise BadInput(f"subset file {path} names index {indices.max()} but the split has "
                           f"{len(dataset)} images")  # fmt: skip
        return indices
    paths = getattr(dataset, "paths", None)
    if paths is None:
        raise BadInput(f"subset file {path} names files, but {dataset.spec} holds no files: "
                       "list integer indices instead")  # fmt: skip
    position = {Path(p).name: i for i, p in enumerate(paths)}
    missing = [entry for entry in entries if entry not in position]
    if missing:
        raise BadInput(f"subset file {path}: {len(missing)} names are not in {dataset.spec} "
                       f"(first: {missing[0]})")  # fmt: skip
    return np.asarray(sorted({position[entry] for entry in entries}), dtype=np.int64)


class Classifier(nn.Module):
    """Backbone + linear head (torchvision's default init), trained end to end."""

    def __init__(self, backbone: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.fc = nn.Linear(backbone.feature_dim, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.fc(self.backbone(images))


def make_optimizer(recipe: SemisupRecipe, model: Classifier,
                   fraction: float) -> torch.optim.SGD:  # fmt: skip
    """SGD with the trunk at ``backbone_lr`` and the head at the recipe's head lr."""
    groups = [{"params": list(model.backbone.parameters()), "base_lr": recipe.backbone_lr},
              {"params": list(model.fc.parameters()),
               "base_lr": recipe.head_lr_for(fraction)}]  # fmt: skip
    for group in groups:
        group["lr"] = group["base_lr"]
    return torch.optim.SGD(groups, lr=recipe.backbone_lr, momentum=recipe.momentum,
                           weight_decay=recipe.weight_decay)  # fmt: skip


@dataclass
class FineTuneData:
    """The labelled training subset, the test split, and their views' geometry."""

    train: Any  # an ImageDataset holding only the labelled subset
    test: Any
    size: int  # side of the training crops and of the evaluation view
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


def fine_tune(
    recipe: SemisupRecipe,
    model: Classifier,
    data: FineTuneData,
    device: torch.device,
    *,
    fraction: float,
    seed: int = 0,
    eval_every: int = 1,
    num_workers: int = 0,
    resume: TrainState | None = None,
    on_epoch_end: Callable[[TrainState], None] | None = None,
    on_batch: Callable[[int, float, float, int], None] | None = None,
) -> TrainState:
    """Fine-tune ``model`` on ``data.train``; test every ``eval_every`` epochs and at the end.

    ``on_batch(images, loss, backbone lr, epoch)`` follows every batch (progress).

    Under ``torchrun`` the model is wrapped in DistributedDataParallel (with SyncBatchNorm
    on CUDA, as the HCSC script does) and each process trains on its share of every batch.
    """
    from sslkit.data.loader import iterate_images, training_batches
    from sslkit.data.views import CropSpec, Photometric, make_view, to_float_rgb
    from sslkit.distributed import rank, world_size

    model = model.to(device)
    optimizer = make_optimizer(recipe, model, fraction)
    state = TrainState({}, {}, 0, [])
    if resume is not None:
        model.load_state_dict(resume.model)
        optimizer.load_state_dict(resume.optimizer)
        state = resume
    network = _distributed(model, device)
    cuda = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=cuda)
    crop = CropSpec(size=data.size, scale=(0.08, 1.0))
    photo = Photometric(flip_prob=0.5, jitter_prob=0.0, grayscale_prob=0.0)
    labels = torch.as_tensor(data.train.labels, dtype=torch.long)
    per_rank = max(1, min(recipe.batch_size, len(data.train)) // world_size())
    for epoch in range(state.epochs_done, recipe.epochs):
        factor = recipe.factor_at(epoch)
        for group in optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
        network.train()
        generator = augmentation_generator(device, seed, epoch)
        order = training_batches(len(data.train), per_rank, seed, epoch, rank(), world_size())
        total, count = 0.0, 0
        for images, index in iterate_images(data.train, order, num_workers):
            view = make_view(to_float_rgb(images.to(device, non_blocking=True)), crop, photo,
                             data.mean, data.std, generator)  # fmt: skip
            if cuda:
                view = view.contiguous(memory_format=torch.channels_last)
            target = labels[index].to(device)
            with torch.autocast("cuda") if cuda else nullcontext():
                loss = F.cross_entropy(network(view), target)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            total += loss.item() * len(target)
            count += len(target)
            if on_batch is not None:
                on_batch(len(target), loss.item(), optimizer.param_groups[0]["lr"], epoch)
        row: dict[str, float] = {"epoch": epoch + 1, "lr_backbone": optimizer.param_groups[0]["lr"],
                                 "lr_head": optimizer.param_groups[1]["lr"],
                                 "loss": total / max(count, 1)}  # fmt: skip
        if (epoch + 1) % eval_every == 0 or epoch + 1 == recipe.epochs:
            result = evaluate(model, data, device)
            row |= {"top1": result.top1, "top5": result.top5}
        state = TrainState({k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
                           copy.deepcopy(optimizer.state_dict()), epoch + 1,
                           [*state.history, row])  # fmt: skip
        if on_epoch_end is not None:
            on_epoch_end(state)
    return state


def evaluate(model: Classifier, data: FineTuneData, device: torch.device) -> Accuracy:
    """Exact top-1/top-5 over the whole test split (eval mode, evaluation view)."""
    from sslkit.features.extract import EvalTransform, embed_dataset

    model.eval()
    transform = EvalTransform(data.size, data.mean, data.std)
    logits = embed_dataset(model, data.test, transform, device, normalize_rows=False)
    return accuracy(logits, torch.as_tensor(data.test.labels, device=logits.device))


def _distributed(model: Classifier, device: torch.device) -> nn.Module:
    """DDP (with SyncBatchNorm on CUDA) when several processes run; the model otherwise."""
    from sslkit.distributed import world_size

    if world_size() == 1:
        return model
    if device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return nn.parallel.DistributedDataParallel(model, device_ids=[device])
    return nn.parallel.DistributedDataParallel(model)
