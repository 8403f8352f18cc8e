"""Places205 transfer on frozen features (PCL's SVMs and HCSC's linear probe).

* ``sgd``: a linear layer (N(0, 0.01), bias 0) trained by SGD on the cached,
  un-augmented backbone features of ``train`` with the ``places-hcsc`` recipe (lr 3.0,
  momentum 0.9, no weight decay, batch 256, 100 epochs, one cosine to 0), top-1 / top-5
  on ``val`` after every epoch; final and best top-1 are reported (HCSC reports the best).
* ``svm``: PCL's low-shot protocol: one-vs-rest ``LinearSVC`` (the VOC settings) on
  ``f / (||f|| + 1e-5)``, prediction = argmax of the decision values, top-1 on ``val``.

Features are ``Resize(256/224 x size)`` -> ``CenterCrop(size)`` with ImageNet statistics
(the release's images are 256 x 256, so HCSC's ``Resize((256, 256))`` is the same).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from sslkit.data.places import Places205Dataset
from sslkit.errors import BadInput
from sslkit.eval.linear import RECIPES, LinearRecipe

if TYPE_CHECKING:
    from sslkit.features.extract import FeatureNetwork


def train_places_linear(train_x: torch.Tensor, train_y: torch.Tensor, val_x: torch.Tensor,
                        val_y: torch.Tensor, num_classes: int, recipe: LinearRecipe,
                        seed: int = 0) -> dict[str, Any]:  # fmt: skip
    """The linear probe on cached features (``train_probe``), scored on val every epoch."""
    from sslkit.eval.common import summary
    from sslkit.eval.linear import feature_batches, new_classifier, train_probe
    from sslkit.eval.transfer import scores

    torch.manual_seed(seed)
    classifier = new_classifier(train_x.shape[1], num_classes).to(train_x.device)
    state = train_probe(recipe, classifier, feature_batches(train_x, train_y, recipe.batch_size,
                                                            seed), val_x, val_y)  # fmt: skip
    with torch.no_grad():
        predictions = classifier(val_x).argmax(dim=1).cpu().numpy()
    return {**summary(state.history), "history": state.history,
            "mean_per_class": scores(predictions, val_y.cpu().numpy()).mean_per_class}  # fmt: skip


def run_places205(network: FeatureNetwork, root: str | Path, device: torch.device, *,
                  protocol: str = "sgd", recipe: LinearRecipe | None = None,
                  image_size: int | None = None, cost: float = 0.5,
                  shots: Sequence[int] | None = None, runs: int = 5, seed: int = 0,
                  cache_dir: str | Path | None = None, use_cache: bool = True,
                  show_progress: bool = False) -> dict[str, Any]:  # fmt: skip
    """Load Places205's train / val splits under ``root`` and run ``sgd`` (recipe
    ``places-hcsc`` unless given) or ``svm``. Returns the command's JSON body."""
    from sslkit.eval.svm import places_svm
    from sslkit.eval.voc import feature_sizes, frozen_features, task_output

    recipe = recipe or RECIPES["places-hcsc"]
    if protocol not in ("sgd", "svm"):
        raise BadInput(f"--task places205 takes --protocol sgd or svm, not {protocol}")
    crop, resize = feature_sizes(network, image_size)
    datasets = {s: Places205Dataset(root, s, crop, resize) for s in ("train", "val")}
    features, sources = frozen_features(network, datasets, device, cache_dir, use_cache, crop,
                                        show_progress)  # fmt: skip
    train_y, val_y = datasets["train"].labels, datasets["val"].labels
    if protocol == "svm":
        result = places_svm(features["train"], train_y, features["val"], val_y, cost, shots,
                            runs, seed)  # fmt: skip
    else:
        classes = max(d.info.num_classes for d in datasets.values())
        result = {"protocol": "sgd", "recipe": asdict(recipe), "metric": "top1",
                  **train_places_linear(torch.from_numpy(features["train"]).to(device),
                                        torch.from_numpy(train_y).to(device),
                                        torch.from_numpy(features["val"]).to(device),
                                        torch.from_numpy(val_y).to(device), classes, recipe,
                                        seed)}  # fmt: skip
    geometry = f"resize{resize}+crop{crop}"
    output = task_output("places205", network, result, sources, datasets, geometry)
    output["classes"] = list(max((d.info.class_names for d in datasets.values()), key=len))
    return output
