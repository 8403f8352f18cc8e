"""``sslkit.pretrain``: learn an encoder without labels, here or as a SLURM job.

Configuration precedence: method defaults < recipe YAML < arguments < ``overrides``. A
workdir that holds a checkpoint is continued with ``resume=True`` or replaced with
``force=True``, never overwritten silently.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from sslkit.api.results import JobResult, PretrainResult
from sslkit.errors import BadInput

LAUNCHERS = ("none", "slurm", "local")


def pretrain(method: str, *, data: str | None = None, config: str | None = None,
             arch: str | None = None, epochs: int | None = None, batch_size: int | None = None,
             lr: float | None = None, workdir: str | Path | None = None, resume: bool = False,
             force: bool = False, download: bool = False, skip_bad_images: bool = False,
             num_workers: int | None = None, overrides: Mapping[str, Any] | None = None,
             no_progress: bool = False, device: str = "auto", seed: int | None = None,
             launcher: str = "none", nodes: int = 1, gpus_per_node: int = 0,
             tasks_per_node: int | None = None, cpus_per_task: int = 8,
             timeout_min: int = 72 * 60, partition: str | None = None,
             wait: bool = False) -> PretrainResult | JobResult:  # fmt: skip
    """Pre-train ``method`` (e.g. ``"hcsc"``, ``"moco+cld"``) and return the run's summary.

    ``data`` is a data spec (default: the recipe's, else ``digits``); ``config`` a recipe
    YAML or a shipped name like ``moco/fashion-mnist`` (default: the shipped recipe for the
    method and dataset); ``overrides`` sets any config value (``{"method.queue_size":
    4096}``). With ``launcher="slurm"`` (or ``"local"``: submitit on this machine) the run
    is submitted as a job of ``nodes`` x ``tasks_per_node`` processes that requeues itself
    with ``resume=True`` when preempted; the result then names the job (and, with
    ``wait=True``, holds its summary). SIGTERM, SIGUSR1, SIGUSR2 or Ctrl-C during training
    write a checkpoint at the current step and raise
    :class:`sslkit.errors.TrainingStopped`; ``resume=True`` continues at the next step.

    Example::

        run = sslkit.pretrain("moco", data="digits", epochs=5, workdir="runs/moco")
        run.checkpoint
    """
    params = {"method": method, "data": data, "config": config, "arch": arch,
              "epochs": epochs, "batch_size": batch_size, "lr": lr,
              "workdir": None if workdir is None else str(workdir), "resume": resume,
              "force": force, "download": download, "skip_bad_images": skip_bad_images,
              "num_workers": num_workers, "overrides": dict(overrides or {}),
              "no_progress": no_progress, "device": device, "seed": seed}  # fmt: skip
    if launcher == "none":
        return train(params)
    if launcher not in LAUNCHERS:
        raise BadInput(f"unknown launcher '{launcher}': use {', '.join(LAUNCHERS)}")
    from sslkit.engine.slurm import JobResources

    resources = JobResources(nodes, gpus_per_node, tasks_per_node, cpus_per_task, timeout_min,
                             partition)  # fmt: skip
    return submit(params, resources, launcher, wait)


def parse_overrides(assignments: Iterable[str]) -> dict[str, Any]:
    """``["train.lr=0.1"]`` (the ``--set`` strings) -> ``{"train.lr": 0.1}`` (YAML values)."""
    from sslkit.config import parse_value

    parsed: dict[str, Any] = {}
    for item in assignments:
        key, sep, raw = item.partition("=")
        if not sep or not key or "." not in key:
            raise BadInput(f"bad --set '{item}': write SECTION.KEY=VALUE, e.g. train.lr=0.1")
        parsed[key] = parse_value(raw, item)
    return parsed


def nested_overrides(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``{"train.lr": 0.1}`` -> ``{"train": {"lr": 0.1}}``; keys must be ``SECTION.KEY``."""
    result: dict[str, Any] = {}
    for key, value in overrides.items():
        if "." not in key or not all(key.split(".")):
            raise BadInput(f"bad override '{key}': write SECTION.KEY, e.g. train.lr")
        node = result
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return result


def resolve_run(params: dict[str, Any]) -> tuple[dict[str, Any], Path]:
    """The resolved config and the workdir of a run, or :class:`BadInput`."""
    from sslkit import config as cfg
    from sslkit.data.specs import parse_spec
    from sslkit.engine.checkpointing import CHECKPOINT_NAME
    from sslkit.methods.registry import get_method
    from sslkit.models.checkpoint import read_checkpoint

    method_name = params["method"]
    method_cls = get_method(method_name)
    set_layer = nested_overrides(params["overrides"])
    device = params["device"]
    flags: dict = {"method": {"name": method_name}}
    for section, key, value in (("data", "spec", params["data"]), ("model", "arch", params["arch"]),
                                ("train", "epochs", params["epochs"]),
                                ("train", "batch_size", params["batch_size"]),
                                ("train", "lr", params["lr"]), ("train", "seed", params["seed"]),
                                ("train", "device", None if device == "auto" else device),
                                ("train", "num_workers", params["num_workers"]),
                                ("data", "download", params["download"] or None),
                                ("data", "skip_bad_images",
                                 params["skip_bad_images"] or None)):  # fmt: skip
        if value is not None:
            flags.setdefault(section, {})[key] = value
    config_file = params["config"]
    recipe = cfg.load_yaml(config_file) if config_file else {}
    spec = (params["data"] or set_layer.get("data", {}).get("spec")
            or recipe.get("data", {}).get("spec") or "digits")  # fmt: skip
    parsed = parse_spec(spec)
    workdir = Path(params["workdir"] or f"runs/{method_name}-{parsed.name}")
    checkpoint_path = workdir / CHECKPOINT_NAME
    resume, force = params["resume"], params["force"]
    if checkpoint_path.exists() and not (resume or force):
        raise BadInput(f"{workdir} already holds a checkpoint: pass --resume to continue it "
                       "or --force to start over")  # fmt: skip
    if resume and checkpoint_path.exists():
        # Continue the saved run; arguments given now (e.g. more epochs) still apply.
        saved = read_checkpoint(checkpoint_path)
        if saved.get("method") != method_cls.name:
            raise BadInput(f"{checkpoint_path} was trained with '{saved.get('method')}', "
                           f"not '{method_name}': pass --method {saved.get('method')}")  # fmt: skip
        config = cfg.resolve(method_cls, saved["config"], flags, set_layer)
    else:
        if not config_file:
            found = cfg.find_recipe(method_cls.name, parsed.name)
            recipe = cfg.load_yaml(found) if found else {}
        flags.setdefault("data", {})["spec"] = spec
        config = cfg.resolve(method_cls, recipe, flags, set_layer)
    if config["method"]["name"] != method_name:
        raise BadInput("the recipe names another method: drop --config or change --method")
    return config, workdir


def train(params: dict[str, Any]) -> PretrainResult:
    """Pre-train in this process (one worker of it under torchrun or a SLURM job).

    Rank 0 holds the workdir's lock for the whole run: a second run on the same workdir is
    refused. A stop signal ends the run with :class:`sslkit.engine.stopping.TrainingStopped`
    after a checkpoint (``resume=True`` continues it).
    """
    import os
    import sys

    from sslkit import distributed
    from sslkit.engine.trainer import Trainer
    from sslkit.engine.workdir_lock import WorkdirLock

    config, workdir = resolve_run(params)
    resume = params["resume"]
    main = os.environ.get("RANK", "0") == "0"
    try:
        with WorkdirLock(workdir, enabled=main):
            if params["force"] and not resume:
                _remove_run_files(workdir)
            trainer = Trainer(config, workdir, resume=resume,
                              show_progress=not params["no_progress"],
                              say=lambda line: print(line, file=sys.stderr, flush=True))
            summary = trainer.fit()
    finally:
        distributed.teardown()
    if any(key.startswith("knn/") for key in summary["final"]):
        summary["score_unit"] = "percent"  # the kNN monitor's top-1
    return PretrainResult(summary, main_process=trainer.dist.is_main)


def _remove_run_files(workdir: Path) -> None:
    """What ``force`` replaces: the checkpoint, the metrics and their pictures."""
    import shutil

    from sslkit.engine.checkpointing import CHECKPOINT_NAME

    for name in (CHECKPOINT_NAME, "metrics.jsonl", "curves.png"):
        (workdir / name).unlink(missing_ok=True)
    if (workdir / "tensorboard").is_dir():  # the old run's events would mix with the new
        shutil.rmtree(workdir / "tensorboard")


def submit(params: dict[str, Any], resources, cluster: str, wait: bool) -> JobResult:
    """Check the run as :func:`train` would, then submit it as a job; say where it went."""
    from sslkit.engine.slurm import LOG_FOLDER, submit_pretrain

    _, workdir = resolve_run(params)
    # the job's log has no terminal: progress comes as a plain line every few seconds
    job = submit_pretrain(params, resources, cluster, workdir)
    output: dict[str, Any] = {
        "launcher": cluster, "job_id": str(job.job_id), "nodes": resources.nodes,
        "tasks_per_node": resources.tasks, "workdir": str(workdir),
        "logs": str(workdir / LOG_FOLDER),
    }  # fmt: skip
    if wait:
        try:
            results = job.results()
        except Exception as exc:  # the job's own failure, as submitit reports it
            raise BadInput(f"job {job.job_id} failed: {str(exc).strip().splitlines()[-1]} "
                           f"(logs in {workdir / LOG_FOLDER})") from exc  # fmt: skip
        output["summary"] = next((result for result in results if result), None)
    return JobResult(output)
