"""A picture of a clustering: a 2-D t-SNE of a sample of the features, coloured by cluster
and, when the features are labelled, by label.

The sample and t-SNE (scikit-learn's Barnes-Hut, PCA init) are seeded: same inputs, same
picture. The features are reduced to 50 dimensions with PCA first, the usual t-SNE
preprocessing. The t-SNE's cost grows with the sample: tens of seconds for the default
2,000 points on 2 CPU cores (``--plot-sample`` trades detail for time).
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from sslkit.errors import BadInput
from sslkit.utils.plotting import new_figure, require_matplotlib, save_png

PURPOSE = "--plot"
PCA_DIM = 50
SMALL_SAMPLE = 1000  # t-SNE of fewer points runs on one thread
LEGEND_MAX = 20  # name the colours in a legend up to this many groups


def sample_rows(count: int, size: int, seed: int) -> np.ndarray:
    """Sorted indices of a seeded uniform sample of ``size`` of ``count`` rows (all if fewer)."""
    if count <= size:
        return np.arange(count)
    return np.sort(np.random.default_rng(seed).choice(count, size, replace=False))


def tsne_2d(points: np.ndarray, seed: int) -> np.ndarray:
    """N x D points -> N x 2 t-SNE coordinates (PCA to 50-d, PCA init, seeded)."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    count = len(points)
    if count < 4:
        raise BadInput(f"t-SNE needs at least 4 points, the sample has {count}: "
                       "raise --plot-sample or use a larger feature file")  # fmt: skip
    points = np.asarray(points, dtype=np.float32)
    dim = min(PCA_DIM, count, points.shape[1])
    if dim < points.shape[1]:
        points = PCA(n_components=dim, random_state=seed).fit_transform(points)
    perplexity = min(30.0, (count - 1) / 3)
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", learning_rate="auto",
                random_state=seed)  # fmt: skip
    # The Barnes-Hut gradient syncs its OpenMP threads 1,000 times; below ~1,000 points that
    # costs more than it saves (10x slower than one thread for 120 points on a busy CPU).
    threads = 1 if count < SMALL_SAMPLE else None
    with threadpool_limits(limits=threads, user_api="openmp"):
        return tsne.fit_transform(points).astype(np.float32)


def plot_clusters(points: np.ndarray, assignments: np.ndarray, labels: np.ndarray | None,
                  out_png: str | os.PathLike[str], sample: int = 2000, seed: int = 0,
                  cluster_title: str = "clusters", title: str = "") -> dict[str, Any]:  # fmt: skip
    """Draw a t-SNE of ``sample`` of the N ``points`` into ``out_png`` (written atomically).

    One panel is coloured by ``assignments`` (N cluster ids); a second by ``labels`` (N,
    -1 when unknown, drawn grey) unless ``labels`` is None. Returns what was drawn:
    ``{"path", "points", "seconds"}``. Raises :class:`BadInput` without matplotlib.
    """
    require_matplotlib(PURPOSE)  # fail before the t-SNE, not after it
    started = time.perf_counter()
    rows = sample_rows(len(points), sample, seed)
    xy = tsne_2d(points[rows], seed)
    panels = [(cluster_title, np.asarray(assignments)[rows])]
    if labels is not None:
        panels.append(("labels", np.asarray(labels)[rows]))
    figure = new_figure(PURPOSE, figsize=(5.5 * len(panels), 5.5), layout="constrained")
    axes = figure.subplots(1, len(panels), squeeze=False).ravel()
    size = float(np.clip(8000 / len(rows), 2, 25))
    for ax, (name, groups) in zip(axes, panels, strict=True):
        _scatter(ax, xy, groups, size)
        ax.set_title(name)
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        figure.suptitle(title)
    save_png(figure, out_png)
    return {"path": str(out_png), "points": len(rows),
            "seconds": round(time.perf_counter() - started, 3)}  # fmt: skip


def _scatter(ax: Any, xy: np.ndarray, groups: np.ndarray, size: float) -> None:
    """Points coloured by group id; negative ids (unknown) grey and underneath."""
    from matplotlib import colormaps

    unknown = groups < 0
    if unknown.any():
        ax.scatter(xy[unknown, 0], xy[unknown, 1], s=size, c="lightgrey", linewidths=0)
    values = np.unique(groups[~unknown])
    if len(values) <= 10:
        colours = colormaps["tab10"](np.arange(len(values)))
    elif len(values) <= 20:
        colours = colormaps["tab20"](np.arange(len(values)))
    else:  # many clusters: spread over a rainbow, shuffled so neighbouring ids differ
        colours = colormaps["turbo"](np.linspace(0, 1, len(values)))
        colours = colours[np.random.default_rng(0).permutation(len(values))]
    position = np.searchsorted(values, groups[~unknown])
    ax.scatter(xy[~unknown, 0], xy[~unknown, 1], s=size, c=colours[position], linewidths=0)
    if len(values) <= LEGEND_MAX:
        from matplotlib.lines import Line2D

        handles = [Line2D([], [], ls="", marker="o", color=colour, label=str(value))
                   for value, colour in zip(values, colours, strict=True)]  # fmt: skip
        if unknown.any():
            handles.append(Line2D([], [], ls="", marker="o", color="lightgrey", label="unknown"))
        ax.legend(handles=handles, fontsize="small", markerscale=0.8, loc="best",
                  ncols=1 + len(handles) // 11)  # fmt: skip
