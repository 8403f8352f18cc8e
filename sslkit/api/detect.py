"""``sslkit.detect``: fine-tune a checkpoint's encoder for VOC / COCO detection in detectron2."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from sslkit.api.results import DetectResult

TASKS = ("voc", "coco")


def detect(task: str, checkpoint: str | Path, data_root: str | Path | None = None, *,
           config: str | None = None, workdir: str | Path | None = None,
           num_gpus: int | None = None, iters: int | None = None, norm: str | None = None,
           opts: Sequence[tuple[str, str]] = (), seed: int = 0, runs: int = 1,
           arch: str | None = None, dry_run: bool = False,
           force: bool = False) -> DetectResult:  # fmt: skip
    """Export ``checkpoint``'s encoder to detectron2, write the config and train and evaluate.

    ``task`` is ``voc`` (Faster R-CNN R50-C4, VOC07+12) or ``coco`` (Mask R-CNN R50-C4, 2x);
    ``config`` a shipped name (``voc0712-24k``, ``voc07-9k``, ``voc0712-fpn-frozen``,
    ``coco-2x``, ``coco-1x``) or a YAML file; ``runs`` trainings, seeded ``seed``,
    ``seed + 1``, ... (mean and std of AP, AP50, AP75, in %). ``data_root`` holds
    ``VOC2007/`` and ``VOC2012/`` (or ``VOCdevkit/``), or ``coco/``. ``num_gpus`` defaults
    to the visible CUDA devices. The workdir
    (default ``runs/detect-<task>``) receives ``backbone.pkl``, ``config.yaml``,
    ``command.sh``, ``seed-<s>/`` and ``detect.json``; ``dry_run`` writes only the first
    three (no detectron2 needed).

    Example::

        sslkit.detect("voc", "ckpt.pt", "/data", num_gpus=8, dry_run=True)
    """
    from sslkit.detection.configs import DEFAULT_CONFIG
    from sslkit.detection.pipeline import RESULT_FILE, DetectRequest, run_detect
    from sslkit.errors import BadInput
    from sslkit.utils.jsonout import write_json

    if task not in TASKS:
        raise BadInput(f"unknown task '{task}': use voc or coco")
    if data_root is None:
        raise BadInput(f"--task {task} needs --data-root DIR (the folder holding "
                       f"{'VOC2007/ and VOC2012/' if task == 'voc' else 'coco/'})")
    started = time.perf_counter()
    folder = Path(workdir or f"runs/detect-{task}")
    request = DetectRequest(task=task, checkpoint=str(checkpoint),
                            datasets_root=str(data_root), workdir=folder,
                            config=config or DEFAULT_CONFIG[task],
                            num_gpus=_num_gpus(num_gpus), seeds=list(range(seed, seed + runs)),
                            iters=iters, norm=norm, arch=arch,
                            opts=tuple(tuple(pair) for pair in opts), dry_run=dry_run,
                            force=force)  # fmt: skip
    output = run_detect(request)
    output["seconds"] = round(time.perf_counter() - started, 3)
    output["score_unit"] = "percent"
    write_json(output, str(folder / RESULT_FILE))
    return DetectResult(output)


def _num_gpus(value: int | None) -> int:
    """``num_gpus``, by default the visible CUDA devices."""
    if value is not None:
        return value
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0
