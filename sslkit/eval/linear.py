"""Linear classification on a frozen encoder: the papers' SGD recipes.

A fresh linear layer (weight ~ N(0, 0.01), bias 0) is trained with SGD on top of a frozen
backbone that stays in eval mode (BN statistics never move; checked at the end). Two ways
to feed it:

* ``augment`` (the papers' protocol): every epoch, random-resized crops (scale 0.08-1) and
  horizontal flips go through the frozen backbone;
* ``features`` (fast): the un-augmented, cached backbone features, so an epoch costs a
  matrix product instead of a forward pass over the dataset.

The test set is always the un-augmented evaluation view, embedded once (the backbone is
frozen, so its test features never change). Accuracies count every test image exactly once.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sslkit.distributed import all_reduce_mean, world_size
from sslkit.engine.optim import LARS
from sslkit.errors import BadInput
from sslkit.eval.common import (
    Accuracy,
    TrainState,
    accuracy,
    augmentation_generator,
    epoch_lr_factor,
)


@dataclass(frozen=True)
class LinearRecipe:
    """One linear-probe schedule: SGD (or LARS) with momentum, lr set once per epoch."""

    name: str
    lr: float
    epochs: int = 100
    batch_size: int = 256
    weight_decay: float = 0.0
    momentum: float = 0.9
    schedule: str = "step"  # step (x gamma at each milestone) or cosine (to 0)
    milestones: tuple[int, ...] = (60, 80)
    gamma: float = 0.1
    optimizer: str = "sgd"  # sgd or lars

    def lr_at(self, epoch: int) -> float:
        """The lr of 0-based ``epoch`` (the scripts' per-epoch ``adjust_learning_rate``)."""
        return self.lr * epoch_lr_factor(self.epochs, self.schedule, self.milestones,
                                         self.gamma, epoch)  # fmt: skip


#: The papers' named recipes (custom values override any field).
RECIPES: dict[str, LinearRecipe] = {
    "pcl": LinearRecipe("pcl", lr=5.0),
    "mocov2": LinearRecipe("mocov2", lr=30.0),
    "adco": LinearRecipe("adco", lr=10.0, schedule="cosine"),
    "conic": LinearRecipe("conic", lr=75.0, schedule="cosine"),
    "simsiam-lars": LinearRecipe("simsiam-lars", lr=1.6, epochs=90, batch_size=4096,
                                 schedule="cosine", optimizer="lars"),  # fmt: skip
    # transfer: HCSC's VOC07 linear layer and Places205 probe
    "voc07-hcsc": LinearRecipe("voc07-hcsc", lr=0.05, batch_size=16, schedule="cosine"),
    "places-hcsc": LinearRecipe("places-hcsc", lr=3.0, schedule="cosine"),
}


def resolve_recipe(name: str, **overrides: Any) -> LinearRecipe:
    """A named recipe with the given fields replaced (``None`` values are ignored)."""
    if name not in RECIPES:
        raise BadInput(f"unknown linear recipe '{name}': known are {', '.join(RECIPES)}")
    changes = {key: value for key, value in overrides.items() if value is not None}
    recipe = replace(RECIPES[name], **changes)
    if recipe.schedule not in ("step", "cosine"):
        raise BadInput(f"unknown schedule '{recipe.schedule}': use step or cosine")
    if recipe.lr <= 0 or recipe.epochs <= 0 or recipe.batch_size <= 0:
        raise BadInput("lr, epochs and batch size must be positive")
    return recipe


def new_classifier(dim: int, num_classes: int) -> nn.Linear:
    """The probe: ``dim -> num_classes``, weight ~ N(0, 0.01), bias 0 (MoCo/PCL/HCSC)."""
    layer = nn.Linear(dim, num_classes)
    nn.init.normal_(layer.weight, std=0.01)
    nn.init.zeros_(layer.bias)
    return layer


def make_optimizer(recipe: LinearRecipe, classifier: nn.Module) -> torch.optim.Optimizer:
    """SGD with momentum (or LARS for the SimSiam recipe) at the recipe's base lr."""
    params = list(classifier.parameters())
    if recipe.optimizer == "lars":
        return LARS(params, lr=recipe.lr, momentum=recipe.momentum,
                    weight_decay=recipe.weight_decay)  # fmt: skip
    return torch.optim.SGD(params, lr=recipe.lr, momentum=recipe.momentum,
                           weight_decay=recipe.weight_decay)  # fmt: skip


#: ``train_batches(epoch)`` yields ``(inputs, labels)`` for one epoch of this process.
BatchSource = Callable[[int], Iterator[tuple[torch.Tensor, torch.Tensor]]]
#: ``on_batch(images, loss, lr, epoch)``: called after every training batch (0-based epoch).
BatchReport = Callable[[int, float, float, int], None]


def train_probe(
    recipe: LinearRecipe,
    classifier: nn.Module,
    train_batches: BatchSource,
    test_inputs: torch.Tensor,
    test_labels: torch.Tensor,
    *,
    resume: TrainState | None = None,
    on_epoch_end: Callable[[TrainState], None] | None = None,
    on_batch: BatchReport | None = None,
) -> TrainState:
    """Train ``classifier`` for the recipe's epochs; test after every epoch.

    Gradients are averaged over processes when running distributed (each process sees
    its share of the batches). ``on_epoch_end`` receives the state after every epoch
    (the command writes its checkpoint there); ``on_batch(images, loss, lr, epoch)``
    follows every batch (progress).
    """
    optimizer = make_optimizer(recipe, classifier)
    state = TrainState({}, {}, 0, [])
    if resume is not None:
        classifier.load_state_dict(resume.model)
        optimizer.load_state_dict(resume.optimizer)
        state = resume
    for epoch in range(state.epochs_done, recipe.epochs):
        lr = recipe.lr_at(epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        classifier.train()
        total, count = 0.0, 0
        for inputs, labels in train_batches(epoch):
            loss = F.cross_entropy(classifier(inputs), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if world_size() > 1:
                for param in classifier.parameters():
                    all_reduce_mean(param.grad)
            optimizer.step()
            total += loss.item() * len(labels)
            count += len(labels)
            if on_batch is not None:
                on_batch(len(labels), loss.item(), lr, epoch)
        result = evaluate(classifier, test_inputs, test_labels)
        state = TrainState(
            {k: v.detach().cpu().clone() for k, v in classifier.state_dict().items()},
            copy.deepcopy(optimizer.state_dict()), epoch + 1,
            [*state.history, {"epoch": epoch + 1, "lr": lr, "loss": total / max(count, 1),
                              "top1": result.top1, "top5": result.top5}],
        )  # fmt: skip
        if on_epoch_end is not None:
            on_epoch_end(state)
    return state


@torch.no_grad()
def evaluate(classifier: nn.Module, inputs: torch.Tensor, labels: torch.Tensor,
             chunk: int = 4096) -> Accuracy:  # fmt: skip
    """Accuracy of the classifier on pre-computed test inputs (every row once)."""
    return accuracy(probe_logits(classifier, inputs, chunk), labels)


@torch.no_grad()
def probe_logits(classifier: nn.Module, inputs: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """``N x C`` logits of the classifier (in eval mode) on pre-computed inputs, in chunks."""
    classifier.eval()
    return torch.cat([classifier(part) for part in inputs.split(chunk)])


def feature_batches(features: torch.Tensor, labels: torch.Tensor, batch_size: int,
                    seed: int) -> BatchSource:  # fmt: skip
    """Shuffled batches of cached features; the order depends only on ``(seed, epoch)``."""

    def batches(epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.from_numpy(np.random.default_rng([seed, epoch]).permutation(len(labels)))
        for part in order.split(batch_size):
            yield features.index_select(0, part), labels.index_select(0, part)

    return batches


def augmented_batches(backbone: nn.Module, dataset, transform_size: int, mean, std,
                      batch_size: int, seed: int, device: torch.device,
                      num_workers: int = 0) -> BatchSource:  # fmt: skip
    """Random-resized crops (scale 0.08-1) + flips through the frozen, eval-mode backbone.

    This process's share of each epoch's seeded permutation (equal-size batches on every
    process; the few images left over change from epoch to epoch).
    """
    from sslkit.data.loader import iterate_images, training_batches
    from sslkit.data.views import CropSpec, Photometric, make_view, to_float_rgb
    from sslkit.distributed import rank

    crop = CropSpec(size=transform_size, scale=(0.08, 1.0))
    photo = Photometric(flip_prob=0.5, jitter_prob=0.0, grayscale_prob=0.0)
    labels = torch.as_tensor(dataset.labels, dtype=torch.long)
    per_rank = max(1, batch_size // world_size())

    def batches(epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        generator = augmentation_generator(device, seed, epoch)
        order = training_batches(len(dataset), per_rank, seed, epoch, rank(), world_size())
        for images, index in iterate_images(dataset, order, num_workers):
            view = make_view(to_float_rgb(images.to(device, non_blocking=True)), crop, photo,
                             mean, std, generator)  # fmt: skip
            if device.type == "cuda":
                view = view.contiguous(memory_format=torch.channels_last)
            with torch.no_grad(), torch.autocast(device.type, enabled=device.type == "cuda"):
                features = backbone(view).float()
            yield features, labels[index].to(device)

    return batches


def frozen_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of every parameter and buffer, for the frozen-backbone check."""
    return {key: value.detach().clone() for key, value in module.state_dict().items()}


def check_unchanged(module: nn.Module, before: dict[str, torch.Tensor]) -> None:
    """The frozen-backbone sanity check of the MoCo/PCL scripts: weights and BN buffers
    are bit-identical after training the probe."""
    for key, value in module.state_dict().items():
        if not torch.equal(value, before[key]):
            raise RuntimeError(f"frozen backbone changed during the linear probe: {key}")
