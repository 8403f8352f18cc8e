"""One detectron2 training and evaluation from a written config (imports detectron2).

:func:`train_and_evaluate` is what every process of a launch runs: register the ROI head
and the datasets, read the config, train with detectron2's ``DefaultTrainer`` and evaluate
with the dataset's evaluator (``PascalVOCDetectionEvaluator`` / ``COCOEvaluator``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from typing import Any

from detectron2.config import CfgNode, get_cfg
from detectron2.data import MetadataCatalog
from detectron2.engine import DefaultTrainer
from detectron2.evaluation import COCOEvaluator, PascalVOCDetectionEvaluator
from detectron2.utils import comm
from detectron2.utils.env import seed_all_rng

from sslkit.detection.datasets import register_datasets
from sslkit.detection.heads import register_extra_norm_head

LOGGERS = ("detectron2", "fvcore", "d2")


class Trainer(DefaultTrainer):
    """detectron2's trainer with the VOC / COCO evaluator chosen by the test set's type."""

    @classmethod
    def build_evaluator(cls, cfg: CfgNode, dataset_name: str, output_folder: str | None = None):
        """``PascalVOCDetectionEvaluator`` for VOC sets, ``COCOEvaluator`` for COCO sets."""
        kind = MetadataCatalog.get(dataset_name).get("evaluator_type", None)
        if kind == "pascal_voc":
            return PascalVOCDetectionEvaluator(dataset_name)
        if kind == "coco":
            folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference")
            return COCOEvaluator(dataset_name, output_dir=folder)
        raise ValueError(f"no evaluator for {dataset_name} (evaluator_type {kind!r}): "
                         "sslkit evaluates the VOC and COCO sets")  # fmt: skip


@contextlib.contextmanager
def detectron2_logging(output_dir: str, rank: int) -> Iterator[None]:
    """detectron2's log to ``OUTPUT_DIR/log.txt`` and (rank 0) to stderr; prints (pycocotools
    prints its summary) go to stderr too, so stdout keeps only ``--json -``."""
    os.makedirs(output_dir, exist_ok=True)
    name = "log.txt" if rank == 0 else f"log.txt.rank{rank}"
    formatter = logging.Formatter("[%(asctime)s %(name)s]: %(message)s", "%m/%d %H:%M:%S")
    handlers: list[logging.Handler] = [logging.FileHandler(os.path.join(output_dir, name))]
    if rank == 0:
        handlers.append(logging.StreamHandler(sys.stderr))
    loggers = [logging.getLogger(n) for n in LOGGERS]
    saved = [(log.level, log.propagate) for log in loggers]
    for handler in handlers:
        handler.setFormatter(formatter)
    for log in loggers:
        log.setLevel(logging.INFO)
        log.propagate = False
        for handler in handlers:
            log.addHandler(handler)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        for log, (level, propagate) in zip(loggers, saved, strict=True):
            for handler in handlers:
                log.removeHandler(handler)
            log.setLevel(level)
            log.propagate = propagate
        for handler in handlers:
            handler.close()


def load_cfg(config_file: str, seed: int | None = None, output_dir: str | None = None) -> CfgNode:
    """detectron2's defaults merged with ``config_file`` (and the run's seed / output folder)."""
    register_extra_norm_head()
    cfg = get_cfg()
    cfg.merge_from_file(config_file, allow_unsafe=False)  # never yaml.unsafe_load
    if seed is not None:
        cfg.SEED = seed
    if output_dir is not None:
        cfg.OUTPUT_DIR = output_dir
    cfg.freeze()
    return cfg


def train_and_evaluate(config_file: str, datasets: dict[str, dict], seed: int,
                       output_dir: str) -> dict[str, Any]:  # fmt: skip
    """Train and evaluate once in this process (of a launch); the evaluator's results."""
    register_datasets(datasets)
    cfg = load_cfg(config_file, seed, output_dir)
    rank = comm.get_rank()
    with detectron2_logging(cfg.OUTPUT_DIR, rank):
        if rank == 0:
            with open(os.path.join(cfg.OUTPUT_DIR, "config.yaml"), "w") as handle:
                handle.write(cfg.dump())
        seed_all_rng(cfg.SEED + rank)
        trainer = Trainer(cfg)
        trainer.resume_or_load(resume=False)
        trainer.train()
    # DefaultTrainer.train() returns the results only with TEST.EXPECTED_RESULTS; its final
    # EvalHook keeps them here (the evaluation at the end of training).
    return dict(getattr(trainer, "_last_eval_results", None) or {})
