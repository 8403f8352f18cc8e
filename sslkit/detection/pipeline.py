"""``sslkit detect`` end to end: export the weights, write config and command, train.

The workdir receives ``backbone.pkl`` (the encoder in detectron2 naming), ``config.yaml``
(the full config detectron2 reads), ``command.sh`` (the exact command that trains it) and,
after training, ``seed-<s>/`` per run and ``detect.json``.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sslkit.errors import BadInput

WEIGHTS_FILE = "backbone.pkl"
CONFIG_FILE = "config.yaml"
COMMAND_FILE = "command.sh"
RESULT_FILE = "detect.json"


@dataclass
class DetectRequest:
    """The inputs of one ``sslkit detect`` call (already validated by click)."""

    task: str
    checkpoint: str
    datasets_root: str
    workdir: Path
    config: str
    num_gpus: int
    seeds: list[int]
    iters: int | None = None
    norm: str | None = None
    arch: str | None = None
    opts: tuple[tuple[str, str], ...] = ()
    dry_run: bool = False
    force: bool = False


def earlier_runs(workdir: Path, force: bool) -> list[Path]:
    """An earlier training's ``seed-*`` folders; bad input unless ``force``."""
    earlier = sorted(workdir.glob("seed-*"))
    if earlier and not force:
        raise BadInput(f"{workdir} already holds detectron2 runs ({earlier[0].name}): pass "
                       "--force to start over or choose another --workdir")  # fmt: skip
    return earlier


def write_command(command: str, path: Path) -> Path:
    """``command.sh``: the training command, executable."""
    from sslkit.utils.atomic import atomic_path, make_executable

    with atomic_path(path) as tmp:
        tmp.write_text(f"#!/bin/sh\n# Written by sslkit detect: trains and evaluates "
                       f"{CONFIG_FILE} with detectron2.\nset -e\n{command}\n")  # fmt: skip
        make_executable(tmp)
    return path


def prepare(request: DetectRequest) -> dict[str, Any]:
    """Export the weights, write the config and the command; what was written."""
    from sslkit.detection.configs import build_config, get_key, write_config
    from sslkit.detection.convert import EXPORTABLE_ARCHS, read_backbone, write_backbone
    from sslkit.detection.datasets import resolve_datasets
    from sslkit.detection.launch import launch_command

    workdir = request.workdir
    loaded = read_backbone(request.checkpoint, request.arch)
    cfg, notes = build_config(request.task, request.config, weights=workdir / WEIGHTS_FILE,
                              output_dir=workdir, depth=EXPORTABLE_ARCHS[loaded.arch],
                              num_gpus=request.num_gpus, seed=request.seeds[0],
                              norm=request.norm, iters=request.iters,
                              opts=request.opts)  # fmt: skip
    names = list(get_key(cfg, "DATASETS.TRAIN", [])) + list(get_key(cfg, "DATASETS.TEST", []))
    datasets = resolve_datasets(names, request.datasets_root, check=not request.dry_run)
    exported = write_backbone(loaded, workdir / WEIGHTS_FILE)
    missing = [name for name, spec in datasets.items() if not spec["found"]]
    if missing:
        notes.append(f"dry run: {', '.join(missing)} not found under --data-root here; "
                     "detectron2's layout (VOC2007/, coco/) is assumed")  # fmt: skip
    header = [f"Written by sslkit detect from {request.config} for --task {request.task}.",
              f"Weights: {exported.path.resolve()} (encoder of {request.checkpoint}, "
              f"{exported.arch}, sha256 {exported.sha256[:12]}).",
              *[f"Dataset {name}: {_where(spec)}" for name, spec in datasets.items()],
              *[f"Note: {note}" for note in notes]]  # fmt: skip
    config_file = write_config(cfg, workdir / CONFIG_FILE, header)
    command = launch_command(config_file, request.task, request.datasets_root,
                             request.num_gpus, request.seeds, workdir / RESULT_FILE,
                             python="python" if request.dry_run else None)  # fmt: skip
    write_command(command, workdir / COMMAND_FILE)
    return {"task": request.task, "config": request.config, "workdir": str(workdir),
            "weights": exported.as_dict(), "config_file": str(config_file),
            "command": command, "command_file": str(workdir / COMMAND_FILE),
            "num_gpus": request.num_gpus, "seeds": request.seeds, "datasets": datasets,
            "iters": get_key(cfg, "SOLVER.MAX_ITER"), "notes": notes,
            "dry_run": request.dry_run}  # fmt: skip


def _where(spec: dict[str, Any]) -> str:
    if spec["kind"] == "voc":
        return f"{spec['dirname']} ({spec['split']})"
    return f"{spec['image_root']} with {spec['json_file']}"


def run_detect(request: DetectRequest) -> dict[str, Any]:
    """Everything ``sslkit detect`` does; the JSON-ready output (runs, mean and std)."""
    from sslkit.detection.launch import check_gpus, require_detectron2, run_seeds, validate_config

    if not request.dry_run:
        require_detectron2()
        check_gpus(request.num_gpus)
    earlier = earlier_runs(request.workdir, request.force)
    output = prepare(request)
    if request.dry_run:
        return output
    validate_config(output["config_file"])
    for folder in earlier:
        shutil.rmtree(folder)
    output.update(run_seeds(output["config_file"], output["datasets"], request.seeds,
                            request.num_gpus, request.workdir))  # fmt: skip
    return output
