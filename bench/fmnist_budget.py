"""Pre-training that pays on a CPU: kNN top-1 on Fashion-MNIST against wall minutes (issue 17).

    python bench/fmnist_budget.py run --method moco [--config moco/fashion-mnist-1h] [--label L]
        [--set KEY=VALUE] [--score-every N]
    python bench/fmnist_budget.py references [--arch resnet18-small-w16 ...]
    python bench/fmnist_budget.py plot [--out docs/img/fmnist-knn-vs-minutes.png]
    python bench/fmnist_budget.py table

``run`` times one ``sslkit pretrain --data fashion-mnist`` command from launch to exit (the
shipped recipe unless ``--config`` names another; every epoch's checkpoint kept), then scores
each epoch's checkpoint with the evaluation ``sslkit knn`` uses by default (backbone features,
weighted kNN, k = 200, T = 0.07, the full 60,000 / 10,000 split) and appends the curve to
``bench/results/fmnist_budget.jsonl``. ``references`` scores the raw pixels and each
architecture at its random initialisation (seed 0) into ``bench/results/fmnist_references.json``.
``plot`` draws every run's curve with the references as horizontal lines; ``table`` prints
the Markdown table of BENCHMARKS.md (top-1 at the end of the run, and at 15 and 30 minutes).

Wall minutes only mean something on a machine doing nothing else: run one at a time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
RUNS_FILE = RESULTS / "fmnist_budget.jsonl"
REFERENCES_FILE = RESULTS / "fmnist_references.json"
DEFAULT_PLOT = Path(__file__).resolve().parent.parent / "docs" / "img" / "fmnist-knn-vs-minutes.png"


def knn_top1(network, train, test, transform, k: int = 200) -> float:
    """Weighted kNN top-1 (k neighbours, T = 0.07) of a network's normalised features."""
    import torch

    from sslkit.eval.knn import knn_classify
    from sslkit.features.extract import embed_dataset

    network.eval()
    device = torch.device("cpu")
    bank = embed_dataset(network, train, transform, device, batch_size=512)
    queries = embed_dataset(network, test, transform, device, batch_size=512)
    return knn_classify(bank, train.labels, queries, test.labels, (k,), 0.07).top1[k]


def epoch_times(workdir: Path) -> dict[int, float]:
    """Unix time at the end of each epoch, from the run's metrics.jsonl."""
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    return {r["epoch"]: r["time"] for r in records if r["kind"] == "epoch"}


def epochs_to_score(ends: dict[int, float], launched: float, every: int) -> set[int]:
    """Every ``every``-th epoch, the last one, and the last to end within 15 and 30 minutes."""
    chosen = {epoch for epoch in ends if epoch % every == 0} | {max(ends)}
    for minutes in (15, 30):
        within = [epoch for epoch, end in ends.items() if end - launched <= minutes * 60]
        chosen |= {max(within)} if within else set()
    return chosen


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer: give 1 or more")
    return value


def machine() -> str:
    """CPU model and core count, for the record."""
    model = platform.processor() or "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")]  # fmt: skip
        model = names[0] if names else model
    return f"{model}, {os.cpu_count()} cores"


def run(args: argparse.Namespace) -> None:
    """Train (timed), then score the checkpoints ``--score-every`` picks; append the record."""
    import torch

    from sslkit.data.specs import load_split
    from sslkit.engine.trainer import kept_checkpoint_name
    from sslkit.features.extract import EvalTransform
    from sslkit.models.checkpoint import load_encoder

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix=f"budget-{args.method}-"))
    command = ["sslkit", "pretrain", "--method", args.method, "--data", "fashion-mnist",
               "--workdir", str(workdir), "--force", "--no-progress",
               "--set", "train.keep_checkpoints=true", "--json", str(workdir / "summary.json")]
    if args.config:
        command += ["--config", args.config]
    command += [item for pair in args.set or [] for item in ("--set", pair)]
    launched = time.time()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    wall = time.time() - launched
    summary = json.loads((workdir / "summary.json").read_text())
    train, test = load_split("fashion-mnist", "train"), load_split("fashion-mnist", "test")
    ends = epoch_times(workdir)
    curve = []
    for epoch in sorted(epochs_to_score(ends, launched, args.score_every)):
        encoder = load_encoder(workdir / kept_checkpoint_name(epoch))
        size = encoder.config["augment"].get("size") or train.info.image_size
        transform = EvalTransform(size, train.info.mean, train.info.std)
        torch.manual_seed(0)
        top1 = knn_top1(encoder.build_backbone(), train, test, transform)
        curve.append({"epoch": epoch, "minutes": round((ends[epoch] - launched) / 60, 2),
                      "knn_top1": round(top1, 2)})  # fmt: skip
        print(json.dumps(curve[-1]), flush=True)
    config = json.loads(json.dumps(encoder.config))
    record = {
        "label": args.label or args.config or f"{args.method}/fashion-mnist",
        "method": args.method, "recipe": args.config or f"{args.method}/fashion-mnist",
        "set": args.set or [], "arch": config["model"]["arch"],
        "epochs": summary["epochs"], "batch_size": config["train"]["batch_size"],
        "wall_minutes": round(wall / 60, 2), "images_per_second": summary["images_per_second"],
        "final_knn_top1": curve[-1]["knn_top1"], "curve": curve, "machine": machine(),
        "torch_threads": torch.get_num_threads(), "date": time.strftime("%Y-%m-%d"),
    }  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    with RUNS_FILE.open("a") as out:
        out.write(json.dumps(record) + "\n")
    print(json.dumps({k: v for k, v in record.items() if k != "curve"}))


def references(args: argparse.Namespace) -> None:
    """Raw pixels and each architecture at its random initialisation (seed 0)."""
    import torch

    from sslkit.data.specs import load_split
    from sslkit.data.views import to_float_rgb
    from sslkit.eval.knn import knn_classify
    from sslkit.features.extract import EvalTransform
    from sslkit.models.backbones import build_backbone

    train, test = load_split("fashion-mnist", "train"), load_split("fashion-mnist", "test")
    pixels = knn_classify(to_float_rgb(train.images).flatten(1), train.labels,
                          to_float_rgb(test.images).flatten(1), test.labels, (200,),
                          0.07).top1[200]  # fmt: skip
    result = json.loads(REFERENCES_FILE.read_text()) if REFERENCES_FILE.is_file() else {}
    result["raw_pixels"] = round(pixels, 2)
    transform = EvalTransform(train.info.image_size, train.info.mean, train.info.std)
    for arch in args.arch:
        torch.manual_seed(0)
        result.setdefault("random_init", {})[arch] = round(
            knn_top1(build_backbone(arch), train, test, transform), 2)
    RESULTS.mkdir(exist_ok=True)
    REFERENCES_FILE.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def load_runs() -> list[dict]:
    """Every recorded run, later records of a label replacing earlier ones."""
    runs: dict[str, dict] = {}
    for line in RUNS_FILE.read_text().splitlines():
        record = json.loads(line)
        runs[record["label"]] = record
    return list(runs.values())


def value_at(curve: list[dict], minutes: float) -> float | None:
    """The top-1 of the last checkpoint written within ``minutes``."""
    within = [point["knn_top1"] for point in curve if point["minutes"] <= minutes]
    return within[-1] if within else None


def table(_: argparse.Namespace) -> None:
    """The Markdown table of every run: final top-1 and the top-1 reached by 15 and 30 minutes."""
    refs = json.loads(REFERENCES_FILE.read_text())
    print(f"raw pixels {refs['raw_pixels']:.2f}; random init "
          + ", ".join(f"{a} {v:.2f}" for a, v in refs["random_init"].items()))
    print("| run | arch | epochs | wall min | images/s | kNN top-1 | by 15 min | by 30 min |")
    print("|---|---|---|---|---|---|---|---|")
    for r in load_runs():
        cells = [value_at(r["curve"], 15), value_at(r["curve"], 30)]
        shown = ["—" if c is None else f"{c:.2f}" for c in cells]
        print(f"| `{r['label']}` | {r['arch']} | {r['epochs']} | {r['wall_minutes']:.1f} | "
              f"{r['images_per_second']:.0f} | **{r['final_knn_top1']:.2f}** | {shown[0]} | "
              f"{shown[1]} |")  # fmt: skip


def plot(args: argparse.Namespace) -> None:
    """kNN top-1 against wall minutes for every run, references as horizontal lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    refs = json.loads(REFERENCES_FILE.read_text())
    figure, axes = plt.subplots(figsize=(9, 5.5))
    # One colour per run up to 20 (the default cycle repeats after 10): tab20's ten strong
    # colours first, then their light twins.
    tab20 = plt.get_cmap("tab20").colors
    colours = iter(tab20[0::2] + tab20[1::2])
    for r in sorted(load_runs(), key=lambda r: r["label"]):
        minutes = [0.0] + [p["minutes"] for p in r["curve"]]
        start = refs["random_init"].get(r["arch"])
        top1 = [start if start is not None else float("nan")] + [p["knn_top1"] for p in r["curve"]]
        axes.plot(minutes, top1, marker=".", label=r["label"], color=next(colours, None))
    axes.axhline(refs["raw_pixels"], color="black", linestyle="--", linewidth=1,
                 label=f"raw pixels ({refs['raw_pixels']:.1f})")  # fmt: skip
    for arch, value in refs["random_init"].items():
        axes.axhline(value, color="grey", linestyle=":", linewidth=1,
                     label=f"random init {arch} ({value:.1f})")  # fmt: skip
    axes.set_xlabel("wall minutes of `sslkit pretrain` (2 CPU cores)")
    axes.set_ylabel("kNN top-1 (%), k = 200, full test split")
    axes.set_title("Fashion-MNIST: self-supervised pre-training on a CPU")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7, loc="lower right", ncol=2)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(out, dpi=110)
    print(out)


def main() -> None:
    """Dispatch the subcommands."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    one = sub.add_parser("run")
    one.add_argument("--method", required=True)
    one.add_argument("--config")
    one.add_argument("--label")
    one.add_argument("--workdir")
    one.add_argument("--set", action="append", help="KEY=VALUE passed to pretrain --set")
    one.add_argument("--score-every", type=positive_int, default=1,
                     help="score every N-th epoch's checkpoint (plus the last, and the last "
                          "within 15 and 30 minutes): long runs spend less on evaluation")
    refs = sub.add_parser("references")
    refs.add_argument("--arch", nargs="*", default=[])
    drawn = sub.add_parser("plot")
    drawn.add_argument("--out", default=str(DEFAULT_PLOT))
    sub.add_parser("table")
    args = parser.parse_args()
    {"run": run, "references": references, "plot": plot, "table": table}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
