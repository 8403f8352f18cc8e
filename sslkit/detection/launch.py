"""Run detectron2 trainings of a written config: one per seed, each through ``launch``.

Importable without detectron2 (it is imported when a training starts). Each training
runs in ``OUTPUT_DIR/seed-<s>``; rank 0 writes the evaluator's results to ``result.json``
there, which this process reads back, so single- and multi-process runs share one path.
``python -m sslkit.detection.launch`` is the command ``sslkit detect --dry-run`` writes.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
from pathlib import Path
from typing import Any

from sslkit.errors import BadInput

INSTALL_HINT = ("install torch first, then pip install --no-build-isolation "
                "'git+https://github.com/facebookresearch/detectron2.git'")  # fmt: skip
METRICS = ("AP", "AP50", "AP75")
RESULT_FILE = "result.json"


def require_detectron2() -> None:
    """Bad input (one line, how to install) unless detectron2 and its C++ ops import."""
    import warnings

    try:
        with warnings.catch_warnings():  # detectron2's own deprecation warnings under new torch
            warnings.simplefilter("ignore", FutureWarning)
            import detectron2  # noqa: F401
            from detectron2 import (
                _C,  # noqa: F401
                modeling,  # noqa: F401  (the module that warns)
            )
    except Exception as exc:  # ImportError, or an OSError/undefined symbol from a bad build
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BadInput(f"detectron2 is not importable ({reason[:120]}): {INSTALL_HINT}; or "
                       "pass --dry-run to only write the weights, config and command") from exc


def check_gpus(num_gpus: int) -> None:
    """A training needs as many CUDA devices as ``num_gpus`` (detectron2's trainer wraps
    several processes in GPU-only DistributedDataParallel; 0 or 1 = one process)."""
    import torch

    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if num_gpus > visible:
        raise BadInput(f"--num-gpus {num_gpus} but {visible} CUDA devices are visible: pass "
                       f"--num-gpus {visible} (0 = one CPU process) or --dry-run")  # fmt: skip


def validate_config(config_file: str | Path) -> None:
    """Bad input when detectron2 refuses the config (unknown key, wrong type)."""
    from sslkit.detection.trainer import load_cfg

    try:
        load_cfg(str(config_file))
    except (KeyError, ValueError, TypeError, AssertionError) as exc:
        lines = str(exc).strip().strip("'\"").splitlines()
        reason = lines[0] if lines else type(exc).__name__
        raise BadInput(f"detectron2 refuses {config_file}: {reason} (check the --opts keys "
                       "and values)") from exc


def metrics(results: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """AP, AP50, AP75 per evaluated kind (``bbox``, ``segm``) as plain floats (nan -> None)."""
    out: dict[str, dict[str, float | None]] = {}
    for kind, values in results.items():
        if not isinstance(values, dict) or not any(m in values for m in METRICS):
            continue
        out[kind] = {}
        for name in METRICS:
            value = values.get(name)
            value = None if value is None else float(value)
            out[kind][name] = None if value is None or math.isnan(value) else value
    return out


def aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and (population) std over the seeds' metrics, per kind and metric."""
    import numpy as np

    mean: dict[str, dict] = {}
    std: dict[str, dict] = {}
    for kind in runs[0]["metrics"] if runs else ():
        mean[kind], std[kind] = {}, {}
        for name in METRICS:
            values = [run["metrics"][kind][name] for run in runs]
            ok = all(v is not None for v in values)
            mean[kind][name] = float(np.mean(values)) if ok else None
            std[kind][name] = float(np.std(values)) if ok else None
    return {"mean": mean, "std": std}


def _worker(config_file: str, datasets: dict[str, dict], seed: int, output_dir: str) -> None:
    """What each launched process runs; rank 0 writes the results."""
    from detectron2.utils import comm

    from sslkit.detection.trainer import train_and_evaluate

    results = train_and_evaluate(config_file, datasets, seed, output_dir)
    if comm.is_main_process():
        from sslkit.utils.jsonout import write_json

        plain = json.loads(json.dumps(results, default=float))
        write_json({"seed": seed, "results": plain}, str(Path(output_dir) / RESULT_FILE))


def run_once(config_file: str | Path, datasets: dict[str, dict], seed: int,
             output_dir: str | Path, num_gpus: int) -> dict[str, Any]:  # fmt: skip
    """One training + evaluation through detectron2's ``launch``; its metrics."""
    from detectron2.engine import launch

    output_dir = Path(output_dir)
    (output_dir / RESULT_FILE).unlink(missing_ok=True)
    launch(_worker, max(num_gpus, 1), num_machines=1, machine_rank=0, dist_url="auto",
           args=(str(config_file), datasets, seed, str(output_dir)))  # fmt: skip
    result_file = output_dir / RESULT_FILE
    if not result_file.is_file():
        raise RuntimeError(f"the detectron2 run in {output_dir} wrote no {RESULT_FILE}")
    results = json.loads(result_file.read_text())["results"]
    return {"seed": seed, "output_dir": str(output_dir), "metrics": metrics(results)}


def run_seeds(config_file: str | Path, datasets: dict[str, dict], seeds: list[int],
              num_gpus: int, output_root: str | Path) -> dict[str, Any]:  # fmt: skip
    """One training per seed in ``output_root/seed-<s>``; the runs, mean and std."""
    runs = [run_once(config_file, datasets, seed, Path(output_root) / f"seed-{seed}", num_gpus)
            for seed in seeds]  # fmt: skip
    return {"runs": runs, **aggregate(runs)}


def launch_command(config_file: str | Path, task: str, data_root: str | Path,
                   num_gpus: int, seeds: list[int], json_path: str | Path,
                   python: str | None = None) -> str:  # fmt: skip
    """The shell command that runs the trainings of a written config (``python``: the
    interpreter to name, default this one; a dry run names ``python`` for another machine)."""
    args = [python or sys.executable or "python", "-m",
            "sslkit.detection.launch", "--config-file", str(Path(config_file).resolve()),
            "--task", task, "--data-root", str(Path(data_root).expanduser().resolve()),
            "--num-gpus", str(num_gpus), "--seed", str(seeds[0]), "--runs", str(len(seeds)),
            "--json", str(Path(json_path).resolve())]  # fmt: skip
    return shlex.join(args)


def main(argv: list[str] | None = None) -> int:
    """``python -m sslkit.detection.launch``: run the trainings of a config ``sslkit detect``
    wrote, e.g. on a cluster node after ``--dry-run``."""
    from sslkit.detection.configs import load_config
    from sslkit.detection.datasets import resolve_datasets
    from sslkit.utils.jsonout import write_json

    parser = argparse.ArgumentParser(prog="python -m sslkit.detection.launch",
                                     description=main.__doc__)  # fmt: skip
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--task", choices=("voc", "coco"), required=True)
    # --datasets-root and --seeds: the names in a command.sh written by sslkit 0.1.0
    parser.add_argument("--data-root", "--datasets-root", dest="data_root", required=True)
    parser.add_argument("--num-gpus", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0, help="the first run's seed")
    parser.add_argument("--runs", "--seeds", dest="runs", type=int, default=1,
                        help="runs, with seeds --seed, --seed + 1, ...")
    parser.add_argument("--json", dest="json_path", default=None)
    args = parser.parse_args(argv)
    try:
        require_detectron2()
        check_gpus(args.num_gpus)
        cfg = load_config(args.config_file)
        names = list(cfg["DATASETS"]["TRAIN"]) + list(cfg["DATASETS"]["TEST"])
        datasets = resolve_datasets(names, args.data_root, check=True)
    except BadInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    seeds = list(range(args.seed, args.seed + args.runs))
    output = run_seeds(args.config_file, datasets, seeds, args.num_gpus, cfg["OUTPUT_DIR"])
    write_json({"task": args.task, "config_file": args.config_file, **output},
               args.json_path)  # fmt: skip
    return 0


if __name__ == "__main__":
    # Through the imported module, so spawned workers unpickle sslkit.detection.launch._worker.
    from sslkit.detection import launch as _module

    sys.exit(_module.main())
