"""``sslkit pretrain``: learn an encoder without labels."""

from __future__ import annotations

from pathlib import Path

import click

from sslkit.commands.common import (
    debug_option,
    device_option,
    json_option,
    report_skipped,
    seed_option,
    skip_bad_images_option,
)


@click.command()
@click.option("--method", "method_name", required=True, help="Method name (see 'sslkit methods').")
@click.option("--data", "data_spec", default=None, metavar="SPEC",
              help="Training data: digits (default), fashion-mnist[:ROOT], imagefolder:PATH, "
                   "cifar10:ROOT, cifar100:ROOT, stl10:ROOT; add @N for a balanced subset.")
@click.option("--config", "config_file", default=None, metavar="FILE",
              help="YAML recipe (a path, or a shipped name like moco/fashion-mnist). "
                   "Default: the shipped recipe for the method and dataset, if any.")
@click.option("--arch", default=None, help="Backbone, e.g. resnet18, resnet18-small, resnet50.")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Number of epochs.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Total batch size over all processes.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Learning rate (before linear scaling, if enabled).")
@click.option("--workdir", type=click.Path(file_okay=False), default=None,
              help="Output folder (default runs/<method>-<dataset>).")
@click.option("--resume", is_flag=True, help="Continue from WORKDIR/checkpoint.pt if present.")
@click.option("--force", is_flag=True, help="Start over even if WORKDIR holds a checkpoint.")
@click.option("--download", is_flag=True, help="Allow downloading Fashion-MNIST if missing.")
@skip_bad_images_option
@click.option("--num-workers", type=click.IntRange(min=0), default=None,
              help="Image-decoding worker processes (image folders).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override any config value, e.g. --set method.queue_size=4096 (repeatable).")
@click.option("--no-progress", is_flag=True, help="Do not draw the progress bar.")
@click.option("--launcher", type=click.Choice(["none", "slurm", "local"]), default="none",
              show_default=True,
              help="none: train in this process (or in each torchrun worker); slurm: submit "
                   "a SLURM job through submitit (pip install 'sslkit[slurm]') that requeues "
                   "itself with --resume when preempted; local: the same job on this machine.")
@click.option("--nodes", type=click.IntRange(min=1), default=1, show_default=True,
              help="--launcher: nodes of the job.")
@click.option("--gpus-per-node", type=click.IntRange(min=0), default=0, show_default=True,
              help="--launcher: GPUs per node (one process each).")
@click.option("--tasks-per-node", type=click.IntRange(min=1), default=None,
              help="--launcher: processes per node (default: one per GPU, 1 without GPUs).")
@click.option("--cpus-per-task", type=click.IntRange(min=1), default=8, show_default=True,
              help="--launcher: CPU cores per process.")
@click.option("--timeout-min", type=click.IntRange(min=1), default=72 * 60, show_default=True,
              help="--launcher: time limit of one job (it requeues itself when reached).")
@click.option("--partition", default=None, help="--launcher slurm: the SLURM partition.")
@click.option("--wait", is_flag=True,
              help="--launcher: wait for the job and exit with its outcome.")
@device_option
@seed_option
@json_option
@debug_option
def pretrain(launcher, nodes, gpus_per_node, tasks_per_node, cpus_per_task, timeout_min,
             partition, wait, **params) -> None:  # fmt: skip
    """Pre-train an encoder with a self-supervised method.

    Config precedence: method defaults < recipe YAML < flags < --set. The resolved config,
    metrics.jsonl, checkpoint.pt and curves.png (with matplotlib; off with --set
    train.plot_curves=false) are written to the workdir; --set train.tensorboard=true also
    writes TensorBoard scalars to WORKDIR/tensorboard/.

    \b
    Examples:
      sslkit pretrain --method moco --epochs 5
      sslkit pretrain --method moco --data fashion-mnist --config moco/fashion-mnist
      torchrun --nproc-per-node 2 -m sslkit pretrain --method moco --data digits
      sslkit pretrain --method hcsc --data imagefolder:/data/imagenet \\
          --config hcsc/imagenet-200ep --launcher slurm --nodes 2 --gpus-per-node 8
    """
    if launcher == "none":
        run_pretrain(**params)
        return
    from sslkit.engine.slurm import JobResources

    resources = JobResources(nodes, gpus_per_node, tasks_per_node, cpus_per_task, timeout_min,
                             partition)  # fmt: skip
    _submit(params, resources, launcher, wait)


def _submit(params: dict, resources, cluster: str, wait: bool) -> None:
    """Check the run as ``run_pretrain`` would, then submit it; say where it went."""
    from sslkit.engine.slurm import LOG_FOLDER, SUMMARY_FILE, submit_pretrain
    from sslkit.errors import BadInput
    from sslkit.utils.jsonout import write_json

    _, workdir = resolve_run(**params)
    # the job's rank 0 writes its summary beside submitit's logs; --json gets the job record
    job_params = {**params, "json_path": str(workdir / LOG_FOLDER / SUMMARY_FILE)}
    job = submit_pretrain(job_params, resources, cluster, workdir)
    output = {"launcher": cluster, "job_id": str(job.job_id), "nodes": resources.nodes,
              "tasks_per_node": resources.tasks, "workdir": str(workdir),
              "logs": str(workdir / LOG_FOLDER)}  # fmt: skip
    json_path = params["json_path"]
    click.echo(f"submitted job {job.job_id} ({resources.nodes} node(s) x {resources.tasks} "
               f"process(es)); logs in {workdir / LOG_FOLDER}", err=json_path == "-")  # fmt: skip
    if wait:
        try:
            results = job.results()
        except Exception as exc:  # the job's own failure, as submitit reports it
            raise BadInput(f"job {job.job_id} failed: {str(exc).strip().splitlines()[-1]} "
                           f"(logs in {workdir / LOG_FOLDER})") from exc  # fmt: skip
        output["summary"] = next((result for result in results if result), None)
    write_json(output, json_path)


def resolve_run(method_name, data_spec, config_file, arch, epochs, batch_size, lr, workdir,
                resume, force, download, skip_bad_images, num_workers, overrides, no_progress,
                device, seed, json_path):  # fmt: skip
    """The resolved config and the workdir of a ``pretrain`` invocation, or a BadInput."""
    from sslkit import config as cfg
    from sslkit.data.specs import parse_spec
    from sslkit.engine.checkpointing import CHECKPOINT_NAME
    from sslkit.errors import BadInput
    from sslkit.methods.registry import get_method
    from sslkit.models.checkpoint import read_checkpoint

    method_cls = get_method(method_name)
    set_layer = cfg.parse_set(overrides)
    flags: dict = {"method": {"name": method_name}}
    for section, key, value in (("data", "spec", data_spec), ("model", "arch", arch),
                                ("train", "epochs", epochs), ("train", "batch_size", batch_size),
                                ("train", "lr", lr), ("train", "seed", seed),
                                ("train", "device", None if device == "auto" else device),
                                ("train", "num_workers", num_workers),
                                ("data", "download", download or None),
                                ("data", "skip_bad_images", skip_bad_images or None)):  # fmt: skip
        if value is not None:
            flags.setdefault(section, {})[key] = value
    spec = data_spec or set_layer.get("data", {}).get("spec")
    recipe = cfg.load_yaml(config_file) if config_file else {}
    spec = spec or recipe.get("data", {}).get("spec") or "digits"
    parsed = parse_spec(spec)
    workdir = Path(workdir or f"runs/{method_name}-{parsed.name}")
    checkpoint_path = workdir / CHECKPOINT_NAME
    if checkpoint_path.exists() and not (resume or force):
        raise BadInput(f"{workdir} already holds a checkpoint: pass --resume to continue it "
                       "or --force to start over")  # fmt: skip
    if resume and checkpoint_path.exists():
        # Continue the saved run; flags given now (e.g. more --epochs) still apply.
        saved = read_checkpoint(checkpoint_path)
        if saved.get("method") != method_name:
            raise BadInput(f"{checkpoint_path} was trained with '{saved.get('method')}', "
                           f"not '{method_name}': pass --method {saved.get('method')}")  # fmt: skip
        config = cfg.resolve(method_cls, saved["config"], flags, set_layer)
    else:
        if not config_file:
            found = cfg.find_recipe(method_name, parsed.name)
            recipe = cfg.load_yaml(found) if found else {}
        flags.setdefault("data", {})["spec"] = spec
        config = cfg.resolve(method_cls, recipe, flags, set_layer)
    if config["method"]["name"] != method_name:
        raise BadInput("the recipe names another method: drop --config or change --method")
    return config, workdir


def run_pretrain(**params) -> dict | None:
    """``sslkit pretrain`` in this process (one worker of it under torchrun or submitit);
    the summary on rank 0."""
    from sslkit import distributed
    from sslkit.engine.checkpointing import CHECKPOINT_NAME
    from sslkit.engine.trainer import Trainer
    from sslkit.utils.jsonout import write_json

    config, workdir = resolve_run(**params)
    resume, force, json_path = params["resume"], params["force"], params["json_path"]
    checkpoint_path = workdir / CHECKPOINT_NAME
    if force and not resume:
        checkpoint_path.unlink(missing_ok=True)
        (workdir / "metrics.jsonl").unlink(missing_ok=True)
        (workdir / "curves.png").unlink(missing_ok=True)
        if (workdir / "tensorboard").is_dir():  # the old run's events would mix with the new
            import shutil

            shutil.rmtree(workdir / "tensorboard")
    trainer = Trainer(config, workdir, resume=resume, show_progress=not params["no_progress"])
    try:
        summary = trainer.fit()
    finally:
        distributed.teardown()
    if not trainer.dist.is_main:
        return None
    report_skipped(summary["skipped_images"])
    _report(summary, json_path)
    write_json(summary, json_path)
    return summary


def _report(summary: dict, json_path: str | None) -> None:
    from sslkit.commands.common import print_table

    final = summary["final"]
    rows = [["checkpoint", summary["checkpoint"]], ["method", summary["method"]],
            ["arch", summary["arch"]], ["data", summary["data"]],
            ["epochs", summary["epochs"]], ["steps", summary["steps"]],
            ["seconds", summary["seconds"]], ["images/s", summary["images_per_second"]]]
    rows += [[f"last epoch {key}", value] for key, value in final.items()]
    print_table("pretrain", ["", "value"], rows, to_stderr=json_path == "-")
