"""Training curves from ``metrics.jsonl``: loss terms, lr and the kNN monitor, as one PNG.

The trainer writes ``curves.png`` next to ``metrics.jsonl`` at every checkpoint; re-plot a
run (or part of one) with::

    from sslkit.engine.plots import plot_curves
    plot_curves("runs/moco-digits/metrics.jsonl", "curves.png")
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any

from sslkit.errors import BadInput
from sslkit.utils.plotting import new_figure, require_matplotlib, save_png

CURVES_NAME = "curves.png"
PURPOSE = "drawing curves.png"


def read_metrics(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` file; a torn line (a killed run) is skipped."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"metrics file {path} not found: pass a run's WORKDIR/metrics.jsonl")
    records = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def curve_series(records: list[dict[str, Any]]) -> dict[str, dict[str, list[float]]]:
    """``{panel: {"step": x, "value": y, "epoch_step": x, "epoch_mean": y}}`` to draw.

    Panels: ``loss`` and every ``loss/<term>`` of the step records, ``lr``, and every
    numeric key naming ``knn`` (the kNN monitor, e.g. ``knn/top1``) of any record. When a
    resumed run logged a step twice, the later record wins.
    """
    steps = _by_step(r for r in records if r.get("kind") == "step")
    epochs = _by_step(r for r in records if r.get("kind") == "epoch")
    keys: list[str] = []
    for record in steps + epochs:
        for key in record:
            if (key == "loss" or key.startswith("loss/")) and key not in keys:
                keys.append(key)
    keys.sort(key=lambda key: key != "loss")  # the optimised total first, then its terms
    if len(keys) == 2 and all(r.get(keys[0]) == r.get(keys[1]) for r in steps):
        keys = keys[:1]  # a single term equal to the total (MoCo): one panel is enough
    panels: dict[str, dict[str, list[float]]] = {}
    for key in [*keys, "lr"]:
        panel = {"step": [], "value": [], "epoch_step": [], "epoch_mean": []}
        for record in steps:
            if _is_number(record.get(key)):
                panel["step"].append(record["step"])
                panel["value"].append(record[key])
        for record in epochs:
            if _is_number(record.get(key)):
                panel["epoch_step"].append(record["step"])
                panel["epoch_mean"].append(record[key])
        if panel["step"] or panel["epoch_step"]:
            panels[key] = panel
    knn_records = _by_step(r for r in records if any(_is_knn(k) for k in r))
    for record in knn_records:
        for key, value in record.items():
            if _is_knn(key) and _is_number(value):
                panel = panels.setdefault(key, {"step": [], "value": [], "epoch_step": [],
                                                "epoch_mean": []})  # fmt: skip
                panel["step"].append(record["step"])
                panel["value"].append(value)
    return panels


def plot_curves(metrics_jsonl: str | os.PathLike[str], out_png: str | os.PathLike[str]) -> Path:
    """Draw the curves of a ``metrics.jsonl`` into ``out_png`` (written atomically).

    One panel per loss term, the lr, and the kNN monitor accuracy when the run logged it;
    x is the optimiser step. Thin lines are the logged steps, dots the epoch means.
    Raises :class:`BadInput` when matplotlib is missing or nothing was logged yet.
    """
    records = read_metrics(metrics_jsonl)
    panels = curve_series(records)
    if not panels:
        raise BadInput(f"{metrics_jsonl} holds no logged steps yet: "
                       "plot it after the first logged step")  # fmt: skip
    columns = min(3, len(panels))
    rows = math.ceil(len(panels) / columns)
    figure = new_figure(PURPOSE, figsize=(4.2 * columns, 3.0 * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for ax, (name, panel) in zip(axes, panels.items(), strict=False):
        few = len(panel["step"]) < 30
        if panel["step"]:
            ax.plot(panel["step"], panel["value"], lw=1, alpha=0.7, marker="." if few else None,
                    color="tab:red" if _is_knn(name) else "tab:blue",
                    label="logged steps")  # fmt: skip
        if panel["epoch_step"]:
            ax.plot(panel["epoch_step"], panel["epoch_mean"], "o-", ms=3, lw=1,
                    color="tab:orange", label="epoch mean")  # fmt: skip
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if name == next(iter(panels)) and panel["epoch_step"]:
            ax.legend(fontsize="small")
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    last = max((r for r in records if "step" in r), key=lambda r: r["step"], default={})
    figure.suptitle(f"{Path(metrics_jsonl).parent.name or 'run'}: epoch {last.get('epoch', 0)}, "
                    f"step {last.get('step', 0)}")  # fmt: skip
    save_png(figure, out_png)
    return Path(out_png)


class TrainingCurves:
    """Redraws ``WORKDIR/curves.png`` from ``WORKDIR/metrics.jsonl``; never fails a run.

    Without matplotlib (or on any drawing error) it prints one warning line on stderr and
    stops trying: a picture is not worth a training run.
    """

    def __init__(self, workdir: Path, enabled: bool) -> None:
        self.metrics = Path(workdir) / "metrics.jsonl"
        self.out = Path(workdir) / CURVES_NAME
        self.enabled = enabled
        if enabled:
            try:
                require_matplotlib(PURPOSE)
            except BadInput as exc:
                self._give_up(f"{exc} (or --set train.plot_curves=false)")

    def update(self) -> None:
        """Redraw the picture from the records logged so far."""
        if not self.enabled or not self.metrics.is_file():
            return
        try:
            plot_curves(self.metrics, self.out)
        except Exception as exc:  # noqa: BLE001 - drawing must never end a training run
            message = (str(exc).splitlines() or [""])[0]
            self._give_up(f"could not draw {self.out} ({type(exc).__name__}: {message})")

    def _give_up(self, reason: str) -> None:
        self.enabled = False
        sys.stderr.write(f"warning: {reason}; training goes on without {CURVES_NAME}\n")


def _by_step(records) -> list[dict[str, Any]]:
    """Records keyed by their step (the last one wins), in step order."""
    latest = {r["step"]: r for r in records if _is_number(r.get("step"))}
    return [latest[step] for step in sorted(latest)]


def _is_knn(key: str) -> bool:
    return "knn" in key.lower() and not key.startswith("loss")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
