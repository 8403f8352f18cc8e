"""Every shipped recipe under configs/ resolves against its method's defaults."""

from __future__ import annotations

import pytest

from sslkit.config import load_yaml, recipes_dir, resolve
from sslkit.methods.registry import get_method

# configs/detectron2/ holds detectron2's own configs, not method recipes (tests/detect/).
RECIPES = sorted(p for p in recipes_dir().glob("*/*.yaml") if p.parent.name != "detectron2")


@pytest.mark.parametrize("path", RECIPES, ids=[f"{p.parent.name}/{p.stem}" for p in RECIPES])
def test_recipe_resolves(path):
    """Known keys only, and the method's config dataclass accepts the method section."""
    method_cls = get_method(path.parent.name)
    config = resolve(method_cls, load_yaml(path))
    method_cls.Config(**{k: v for k, v in config["method"].items() if k != "name"})


def test_recipes_exist():
    """The recipes the README and the issues name are shipped."""
    names = {f"{p.parent.name}/{p.stem}" for p in RECIPES}
    assert {"moco/digits", "moco/fashion-mnist", "hcsc/digits", "hcsc/fashion-mnist",
            "hcsc/imagenet-200ep",
            "hcsc/imagenet-multicrop-200ep", "hcsc/cifar10"} <= names  # fmt: skip
