"""sslkit: self-supervised visual representation learning from the command line and Python.

One function per command, each returning a result whose ``to_dict()`` is the command's
``--json`` output::

    import sslkit

    run = sslkit.pretrain("moco", data="digits", epochs=5, workdir="runs/moco")
    sslkit.knn(checkpoint=run.checkpoint, data="digits").best

The functions (and torch behind them) are imported on first use, so ``import sslkit`` and
``sslkit --help`` stay instant.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: name -> module of the Python API (``sslkit.api.<module>.<name>``)
API = {"pretrain": "pretrain", "extract": "extract", "knn": "knn", "cluster": "cluster",
       "linear": "linear", "semisup": "semisup", "transfer": "transfer", "detect": "detect"}
__all__ = ["__version__", "cluster", "detect", "extract", "knn", "linear", "pretrain",
           "semisup", "transfer"]

if TYPE_CHECKING:
    from sslkit.api.cluster import cluster
    from sslkit.api.detect import detect
    from sslkit.api.extract import extract
    from sslkit.api.knn import knn
    from sslkit.api.linear import linear
    from sslkit.api.pretrain import pretrain
    from sslkit.api.semisup import semisup
    from sslkit.api.transfer import transfer


def __getattr__(name: str) -> Any:
    """Import an API function when it is first used (PEP 562)."""
    if name in API:
        return getattr(importlib.import_module(f"sslkit.api.{API[name]}"), name)
    raise AttributeError(f"module 'sslkit' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted({*globals(), *API})
