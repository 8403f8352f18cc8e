"""``sslkit pretrain``: learn an encoder without labels."""

from __future__ import annotations

import click

from sslkit.commands.common import (
    complete_method,
    complete_recipe,
    debug_option,
    device_option,
    json_option,
    print_table,
    report_skipped,
    seed_option,
    skip_bad_images_option,
)
from sslkit.utils.jsonout import write_json


@click.command()
@click.option("--method", "method_name", required=True, shell_complete=complete_method,
              help="Method name (see 'sslkit methods').")
@click.option("--data", default=None, metavar="SPEC",
              help="Training data: digits (default), fashion-mnist[:ROOT], imagefolder:PATH, "
                   "cifar10:ROOT, cifar100:ROOT, stl10:ROOT; add @N for a balanced subset.")
@click.option("--config", default=None, metavar="NAME|FILE", shell_complete=complete_recipe,
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
def pretrain(method_name, overrides, json_path, **options) -> None:
    """Pre-train an encoder with a self-supervised method.

    Config precedence: method defaults < recipe YAML < flags < --set. The resolved config,
    metrics.jsonl, checkpoint.pt and curves.png (with matplotlib; off with --set
    train.plot_curves=false) are written to the workdir; --set train.tensorboard=true also
    writes TensorBoard scalars to WORKDIR/tensorboard/. Checkpoints: every epoch, every
    15 minutes and at the end (train.checkpoint_every, train.checkpoint_every_minutes,
    train.checkpoint_every_steps); SIGTERM, SIGUSR1 or Ctrl-C write one at the current
    step and exit 3, and --resume continues at the next step.

    \b
    Examples:
      sslkit pretrain --method moco --epochs 5
      sslkit pretrain --method moco --data fashion-mnist --config moco/fashion-mnist
      torchrun --nproc-per-node 2 -m sslkit pretrain --method moco --data digits
      sslkit pretrain --method hcsc --data imagefolder:/data/imagenet \\
          --config hcsc/imagenet-200ep --launcher slurm --nodes 2 --gpus-per-node 8
    """
    from sslkit.api.pretrain import parse_overrides
    from sslkit.api.pretrain import pretrain as run
    from sslkit.api.results import JobResult

    result = run(method_name, overrides=parse_overrides(overrides), **options)
    if not result.main_process:
        return
    if isinstance(result, JobResult):
        click.echo(f"submitted job {result.job_id} ({result['nodes']} node(s) x "
                   f"{result['tasks_per_node']} process(es)); logs in {result['logs']}",
                   err=json_path == "-")  # fmt: skip
    else:
        report_skipped(result["skipped_images"])
        _report(result.to_dict(), json_path)
    write_json(result.to_dict(), json_path)


def _report(summary: dict, json_path: str | None) -> None:
    rows = [["checkpoint", summary["checkpoint"]], ["method", summary["method"]],
            ["arch", summary["arch"]], ["data", summary["data"]],
            ["epochs", summary["epochs"]], ["steps", summary["steps"]],
            ["seconds", summary["seconds"]], ["images/s", summary["images_per_second"]]]
    rows += [[f"last epoch {key}", value] for key, value in summary["final"].items()]
    print_table("pretrain", ["", "value"], rows, to_stderr=json_path == "-")
