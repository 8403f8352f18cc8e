"""Figures from an optional matplotlib, and atomic PNG writes.

matplotlib is an optional dependency (``pip install 'sslkit[plots]'``); every picture
sslkit draws starts with :func:`new_figure`, so a missing install is one clear message.
Figures are plain ``matplotlib.figure.Figure`` objects rendered by the Agg canvas: no
pyplot state, no GUI backend, and a notebook's own backend is left alone.
"""

from __future__ import annotations

import os
from typing import Any

from sslkit.errors import BadInput
from sslkit.utils.atomic import atomic_path

INSTALL_HINT = "pip install 'sslkit[plots]'"


def require_matplotlib(purpose: str = "plotting") -> None:
    """Raise :class:`BadInput` naming the fix when matplotlib is not installed.

    ``purpose`` says what needed it (``"--plot"``, ``"curves.png"``, ...).
    """
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise BadInput(f"{purpose} needs matplotlib: {INSTALL_HINT}") from exc


def new_figure(purpose: str = "plotting", **kwargs: Any) -> Any:
    """A ``Figure(**kwargs)`` on the Agg canvas; :class:`BadInput` if matplotlib is missing."""
    require_matplotlib(purpose)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(**kwargs)
    FigureCanvasAgg(figure)
    return figure


def save_png(figure: Any, path: str | os.PathLike[str], dpi: int = 100) -> None:
    """Write ``figure`` to ``path`` as a PNG atomically (temp name, then rename)."""
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=dpi)
