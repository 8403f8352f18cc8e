"""``sslkit.semisup``: fine-tune an encoder and a linear head with a fraction of the labels."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sslkit.api.common import run_evaluation
from sslkit.api.results import SemisupResult
from sslkit.errors import BadInput

STATE_FILE = "semisup.pt"


def semisup(checkpoint: str | Path, data: str, *, labels: float | None = None,
            subset_file: str | Path | None = None, recipe: str = "hcsc",
            epochs: int | None = None, backbone_lr: float | None = None,
            head_lr: float | None = None, batch_size: int | None = None,
            weight_decay: float | None = None, milestones: Sequence[int] | None = None,
            eval_every: int = 1, arch: str | None = None, workdir: str | Path | None = None,
            resume: bool = False, force: bool = False, seed: int = 0, num_workers: int = 0,
            download: bool = False, skip_bad_images: bool = False, no_progress: bool = False,
            device: str = "auto") -> SemisupResult:  # fmt: skip
    """Fine-tune ``checkpoint``'s encoder with a linear head on a labelled subset of
    ``data``'s training split; top-1 / top-5 (%) on its test split.

    The subset is ``labels`` (a fraction, class-balanced, drawn with ``seed``) or the
    images a ``subset_file`` names (``1percent.txt`` format). ``recipe`` is ``hcsc``,
    ``pcl`` or ``cld``; the other arguments override its fields. With ``workdir`` the
    state is saved every epoch (``semisup.pt``, continued by ``resume=True``) and the result
    written to ``semisup.json``.

    Example::

        sslkit.semisup("runs/hcsc/checkpoint.pt", "digits", labels=0.1, epochs=20).top1
    """
    from sslkit.eval.semisup import resolve_recipe

    if (labels is None) == (subset_file is None):
        raise BadInput("give either --labels FRACTION (e.g. 0.1) or --subset-file FILE")
    chosen = resolve_recipe(recipe, epochs=epochs, backbone_lr=backbone_lr, head_lr=head_lr,
                            batch_size=batch_size, weight_decay=weight_decay,
                            milestones=None if milestones is None else tuple(milestones))
    inputs = {"checkpoint": str(checkpoint), "data": data, "labels": labels,
              "subset_file": subset_file, "eval_every": eval_every, "arch": arch,
              "num_workers": num_workers, "download": download,
              "skip_bad_images": skip_bad_images, "show_progress": not no_progress}  # fmt: skip
    output, main = run_evaluation(
        "semisup", workdir, STATE_FILE, resume, force, device,
        lambda env, folder: _run(env, chosen, inputs, folder, resume, seed))
    return SemisupResult(output, main_process=main)


def _run(env, recipe, inputs: dict[str, Any], folder: Path | None, resume: bool,
         seed: int) -> dict[str, Any]:  # fmt: skip
    import hashlib
    from dataclasses import asdict

    import torch

    from sslkit.eval.common import load_state, save_state, summary
    from sslkit.eval.semisup import (
        Classifier,
        FineTuneData,
        balanced_subset,
        fine_tune,
        subset_from_file,
    )
    from sslkit.features.extract import load_feature_network
    from sslkit.features.service import eval_transform_for, load_dataset
    from sslkit.utils.progress import progress

    spec, fraction, subset_file = inputs["data"], inputs["labels"], inputs["subset_file"]
    network = load_feature_network(inputs["checkpoint"], "backbone", inputs["arch"])
    train = load_dataset(spec, "train", network, inputs["download"], inputs["skip_bad_images"])
    test = load_dataset(spec, "test", network, inputs["download"], inputs["skip_bad_images"])
    if (train.labels < 0).any() or (test.labels < 0).any():
        raise BadInput(f"{spec} has unlabelled images (-1): semisup needs labels")
    indices = (subset_from_file(train, subset_file) if subset_file
               else balanced_subset(train.labels, fraction, seed))  # fmt: skip
    labelled = train.subset(indices)
    used_fraction = len(indices) / len(train)
    num_classes = int(max(train.labels.max(), test.labels.max())) + 1
    transform = eval_transform_for(network, train)
    data = FineTuneData(labelled, test, transform.size, transform.mean, transform.std)
    torch.manual_seed(seed)
    model = Classifier(network.encoder.build_backbone(), num_classes)
    subset_id = hashlib.sha256(indices.astype("int64").tobytes()).hexdigest()[:16]
    meta = {"format": "sslkit.semisup", "recipe": asdict(recipe), "subset": subset_id,
            "encoder": network.encoder.sha256}  # fmt: skip
    resume_state = load_state(folder / STATE_FILE, meta) if resume and folder else None

    def save(state) -> None:
        if folder is not None and env.is_main:
            save_state(folder / STATE_FILE, state, meta)

    per_rank = max(1, min(recipe.batch_size, len(indices)) // env.world_size)
    per_epoch = len(indices) // (per_rank * env.world_size) * per_rank  # full batches only
    done = resume_state.epochs_done if resume_state is not None else 0
    with progress(f"semisup ({len(indices)} labelled images, recipe {recipe.name})",
                  recipe.epochs * per_epoch,
                  enabled=inputs["show_progress"] and env.is_main) as shown:  # fmt: skip
        shown.update(completed=done * per_epoch)

        def report(images: int, loss: float, lr: float, epoch: int) -> None:
            shown.update(advance=images, images=images, epoch=f"{epoch + 1}/{recipe.epochs}",
                         loss=loss, lr=lr)  # fmt: skip

        state = fine_tune(recipe, model, data, env.device, fraction=used_fraction, seed=seed,
                          eval_every=inputs["eval_every"], num_workers=inputs["num_workers"],
                          resume=resume_state, on_epoch_end=save, on_batch=report)  # fmt: skip
    tested = [row for row in state.history if "top1" in row]
    return {
        "protocol": "semisup", "recipe": asdict(recipe),
        "head_lr": recipe.head_lr_for(used_fraction),
        "labelled": {"images": len(indices), "fraction": used_fraction,
                     "source": str(subset_file) if subset_file
                     else f"balanced {fraction:g}, seed {seed}",
                     "subset_sha": subset_id},
        "num_classes": num_classes, "result": summary(tested), "history": state.history,
        "score_unit": "percent",
        "inputs": {**network.provenance(), "dataset": train.spec,
                   "train_fingerprint": train.fingerprint(),
                   "test_fingerprint": test.fingerprint(),
                   "skipped_images": {"train": list(train.skipped_images),
                                      "test": list(test.skipped_images)}},
    }  # fmt: skip
