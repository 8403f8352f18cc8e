"""``sslkit detect``: fine-tune a checkpoint's encoder for VOC / COCO detection in detectron2."""

from __future__ import annotations

import click

from sslkit.commands.common import debug_option, json_option, print_table, renamed
from sslkit.utils.jsonout import write_json

CONFIG_NAMES = ("voc0712-24k", "voc07-9k", "voc0712-fpn-frozen", "coco-2x", "coco-1x")


@click.command()
@click.option("--task", type=click.Choice(["voc", "coco"]), required=True, metavar="TASK",
              help="voc: Faster R-CNN, PASCAL VOC (AP, AP50, AP75 on voc_2007_test); coco: "
                   "Mask R-CNN, COCO 2017 (bbox and segm AP on val2017).")
@click.option("--checkpoint", required=True, type=click.Path(dir_okay=False),
              help="Encoder (sslkit, torchvision or MoCo/PCL/HCSC release); ResNet-18/34/50 "
                   "with the ImageNet stem (R50 for the C4 configs).")
@click.option("--data-root", type=click.Path(file_okay=False), default=None,
              metavar="ROOT",
              help="(Required.) Folder holding VOC2007/ and VOC2012/ (or VOCdevkit/), or "
                   "coco/ with train2017/, val2017/, annotations/.")
@click.option("--config", default=None, metavar="NAME|FILE",
              help=f"Shipped config ({', '.join(CONFIG_NAMES)}) or a YAML file. Default: "
                   "voc0712-24k for voc (VOC07+12, 24k iterations), coco-2x for coco.")
@click.option("--workdir", type=click.Path(file_okay=False), default=None,
              help="Where backbone.pkl, config.yaml, command.sh, seed-<s>/ and detect.json "
                   "go (default runs/detect-<task>).")
@click.option("--num-gpus", type=click.IntRange(min=0), default=None,
              help="Processes, one per GPU, through detectron2's launch (default: the "
                   "visible CUDA devices; 0 = one CPU process).")
@click.option("--iters", type=click.IntRange(min=1), default=None,
              help="Train this many iterations: lr steps keep their relative place, warm-up "
                   "is capped at it.")
@click.option("--norm", type=click.Choice(["naiveSyncBN", "SyncBN", "BN"]), default=None,
              help="Backbone/ROI-head norm of the C4 configs (default naiveSyncBN; SyncBN as "
                   "HCSC). One process always uses BN.")
@click.option("--opts", nargs=2, multiple=True, metavar="KEY VALUE",
              help="Set a detectron2 config key, e.g. --opts SOLVER.BASE_LR 0.01 (repeat "
                   "for more keys; last wins).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the first run.")
@click.option("--runs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Number of trainings (seeds SEED, SEED+1, ...): mean and std reported.")
@click.option("--arch", default=None, help="Backbone arch if the checkpoint does not say.")
@click.option("--dry-run", is_flag=True,
              help="Only write backbone.pkl, config.yaml and command.sh (no detectron2 "
                   "needed), e.g. to train on another machine.")
@click.option("--force", is_flag=True, help="Replace the runs a workdir already holds.")
@json_option
@debug_option
@renamed("--datasets-root", "--data-root", "data_root", type=click.Path(file_okay=False))
@renamed("--seeds", "--runs", "runs", type=click.IntRange(min=1))
def detect(json_path, **options) -> None:
    """Fine-tune a checkpoint's encoder for object detection with detectron2.

    Exports the encoder to detectron2 weights, writes the full config (R50-C4 with BN as
    MoCo/HCSC; VOC07+12 24k iterations, COCO 2x) and trains and evaluates with detectron2,
    which is not an sslkit dependency: install torch, then
    pip install --no-build-isolation 'git+https://github.com/facebookresearch/detectron2.git'

    \b
    Examples:
      sslkit detect --task voc --checkpoint ckpt.pt --data-root /data --num-gpus 8 \\
          --runs 5 --json voc.json
      sslkit detect --task coco --checkpoint ckpt.pt --data-root /data --num-gpus 8
      sslkit detect --task voc --checkpoint ckpt.pt --data-root /data --num-gpus 8 \\
          --dry-run --workdir runs/voc      # then: sh runs/voc/command.sh
    """
    from sslkit.api.detect import detect as run

    result = run(**options)
    _print(result.to_dict(), json_path)
    write_json(result.to_dict(), json_path)


def _print(output: dict, json_path: str | None) -> None:
    stderr = json_path == "-"
    for note in output["notes"]:
        click.echo(f"note: {note}", err=True)
    if output["dry_run"]:
        rows = [["weights", output["weights"]["path"]], ["config", output["config_file"]],
                ["command", output["command_file"]]]  # fmt: skip
        print_table(f"detectron2 {output['task']} run written (dry run)", ["", "file"], rows,
                    to_stderr=stderr)  # fmt: skip
        click.echo(output["command"], err=stderr)
        return
    metrics = list(next(iter(output["mean"].values()), {}))  # AP, AP50, AP75
    rows = []
    for run in output["runs"]:
        for kind, values in run["metrics"].items():
            rows.append([f"seed {run['seed']}", kind, *[_value(values[m]) for m in metrics]])
    for kind, values in output["mean"].items():
        spread = output["std"][kind]
        rows.append([f"mean ± std ({len(output['runs'])})", kind,
                     *[_spread(values[m], spread[m]) for m in metrics]])  # fmt: skip
    print_table(f"detectron2 {output['task']} ({output['config']}, {output['iters']} "
                "iterations)", ["run", "kind", *metrics], rows, to_stderr=stderr)  # fmt: skip


def _value(value: float | None) -> float | str:
    return "-" if value is None else value


def _spread(mean: float | None, std: float | None) -> str:
    return "-" if mean is None else f"{mean:.2f} ± {std:.2f}"
