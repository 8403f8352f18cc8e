"""The training loop: one loop for every method, read top to bottom in :meth:`Trainer.fit`.

The trainer owns the device, AMP and channels_last, the optimiser and lr schedule,
checkpointing, logging and DistributedDataParallel. It never knows which method it
trains: the method turns batches of views into loss terms (see ``sslkit.methods.base``).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
import yaml

from sslkit import distributed
from sslkit.config import method_config
from sslkit.data.loader import epoch_order, iterate_images, training_batches
from sslkit.data.specs import load_split
from sslkit.data.views import make_views
from sslkit.distributed import all_gather_objects, any_rank
from sslkit.engine.checkpointing import (
    CHECKPOINT_NAME,
    CheckpointSchedule,
    epoch_position,
    read_training_checkpoint,
    restore_rng_state,
    rng_state,
    training_payload,
    write_training_checkpoint,
)
from sslkit.engine.logging import (
    MetricsLog,
    TrainingProgress,
    forget_steps_after,
    require_tensorboard,
)
from sslkit.engine.monitor import KnnMonitor
from sslkit.engine.optim import apply_lr, build_optimizer, lr_factor, scaled_lr
from sslkit.engine.plots import TrainingCurves
from sslkit.engine.stopping import StopSignals, TrainingStopped
from sslkit.errors import BadInput
from sslkit.features.extract import EvalTransform, embed_dataset
from sslkit.methods.base import Batch, EpochContext, StepContext
from sslkit.methods.registry import get_method
from sslkit.models.backbones import build_backbone, default_arch
from sslkit.utils.atomic import atomic_path, remove_stale_temp_files


def kept_checkpoint_name(epoch: int) -> str:
    """File name of the copy ``train.keep_checkpoints`` keeps of epoch ``epoch``'s checkpoint."""
    return f"checkpoint_epoch{epoch:04d}.pt"


class TrainingDiverged(BadInput):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def _seeded_generator(device: torch.device, *seeds: int) -> torch.Generator:
    generator = torch.Generator(device=device)
    generator.manual_seed(hash(tuple(seeds)) & 0x7FFF_FFFF_FFFF)
    return generator


class Trainer:
    """Pre-trains a method on a dataset as a resolved config says, in ``workdir``.

    ``handle_signals`` turns SIGTERM, SIGUSR1, SIGUSR2 and Ctrl-C into a checkpoint and a
    :class:`TrainingStopped` (see :mod:`sslkit.engine.stopping`); ``say`` receives the one
    line that says where a resumed run continues.
    """

    def __init__(self, config: dict[str, Any], workdir: Path, resume: bool = False,
                 show_progress: bool = True, handle_signals: bool = True,
                 say: Callable[[str], None] | None = None) -> None:  # fmt: skip
        self.workdir = Path(workdir)
        self.handle_signals = handle_signals
        self.say = say or (lambda _line: None)
        self.resumed_from: dict[str, int] | None = None
        self.dist = distributed.setup(config["train"]["device"])
        self.resume_state = self._resume_state() if resume else None
        self.config = config
        self.train = config["train"]
        self.show_progress = show_progress and self.dist.is_main
        if self.train["batch_size"] % self.dist.world_size:
            raise BadInput(f"batch size {self.train['batch_size']} is not divisible by the "
                           f"{self.dist.world_size} processes: choose a multiple")  # fmt: skip
        self.batch_per_rank = self.train["batch_size"] // self.dist.world_size
        if self.train["tensorboard"]:
            require_tensorboard()  # fail now, not after building the data and the model
        self.curves = TrainingCurves(self.workdir, self.train["plot_curves"] and self.dist.is_main)

    def _resume_state(self) -> dict[str, Any] | None:
        path = self.workdir / CHECKPOINT_NAME
        return read_training_checkpoint(path) if path.is_file() else None

    # -- construction -------------------------------------------------------------------
    def _build(self) -> None:
        config, device = self.config, self.dist.device
        torch.manual_seed(self.train["seed"])  # same initial weights on every rank
        self.dataset = load_split(config["data"]["spec"], "train",
                                  download=config["data"]["download"],
                                  image_size=config["data"]["image_size"],
                                  skip_bad_images=config["data"]["skip_bad_images"])  # fmt: skip
        info = dataclasses.replace(self.dataset.info, num_samples=len(self.dataset))
        config["model"]["arch"] = config["model"]["arch"] or default_arch(info.image_size)
        method_cls = get_method(config["method"]["name"])
        backbone = build_backbone(config["model"]["arch"])
        try:
            self.method = method_cls(method_config(method_cls, config["method"]), backbone,
                                     info)  # fmt: skip
        except (RuntimeError, ValueError, MemoryError) as exc:  # e.g. a queue too big to hold
            reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else \
                type(exc).__name__  # fmt: skip
            raise BadInput(f"cannot build {method_cls.name} with these method.* settings "
                           f"({reason}): check the sizes in the recipe and --set") from exc
        self.method.to(device)
        if self.dist.distributed and self.method.sync_batchnorm and device.type == "cuda":
            # (nn.SyncBatchNorm has no CPU kernel: CPU processes keep per-process BN)
            self.method = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.method)
        self.channels_last = bool(self.train["channels_last"])
        if self.channels_last:
            self.method.to(memory_format=torch.channels_last)
        self.view_spec = self.method.views(config["augment"])
        eval_size = config["augment"].get("size") or info.image_size
        self.eval_transform = EvalTransform(eval_size, info.mean, info.std)
        self.monitor = self._knn_monitor(config)
        self.base_lr = scaled_lr(self.train)
        self.optimizer = build_optimizer(self.method.param_groups(), self.train, self.base_lr)
        self.use_amp = bool(self.train["amp"]) and device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda") if self.use_amp else None
        self.epoch, self.step, self.batches_done = 0, 0, 0
        self.epoch_order = None
        if self.resume_state is not None:
            self._restore(self.resume_state)
        self.model = self.method
        if self.dist.distributed:
            ignored = self.method.ddp_ignored_parameters()
            if ignored:  # trained and synchronised by the method's own optimisers
                torch.nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(
                    self.method, ignored)  # fmt: skip
            self.model = torch.nn.parallel.DistributedDataParallel(
                self.method,
                device_ids=[device.index] if device.type == "cuda" else None,
                broadcast_buffers=False,
            )
        self.steps_per_epoch = len(self._batches(0, self.epoch_order))
        if self.resumed_from is not None and self.dist.is_main:
            done = self.resumed_from["batches_done"]
            inside = (f" after {done} of its {self.steps_per_epoch} steps" if done
                      else " at its start")  # fmt: skip
            total = self.train["epochs"] * self.steps_per_epoch
            self.say(f"resuming {self.workdir / CHECKPOINT_NAME}: epoch {self.epoch + 1}"
                     f"{inside}, step {self.step + 1} of {total}")  # fmt: skip

    def _knn_monitor(self, config: dict[str, Any]) -> KnnMonitor | None:
        """The kNN monitor when ``train.knn_monitor_every`` > 0 (loads the test split)."""
        every = int(self.train["knn_monitor_every"])
        if every <= 0:
            return None
        test = load_split(config["data"]["spec"], "test", download=config["data"]["download"],
                          image_size=config["data"]["image_size"],
                          skip_bad_images=config["data"]["skip_bad_images"])  # fmt: skip
        return KnnMonitor(self.dataset, test, self.eval_transform, every,
                          int(self.train["knn_monitor_k"]),
                          float(self.train["knn_monitor_temperature"]))  # fmt: skip

    def _restore(self, state: dict[str, Any]) -> None:
        self.method.load_state_dict(state["method_state"])
        # The saved optimiser state carries each group's base lr; the config resolved now
        # wins, so `--resume --lr X` (e.g. after a divergence) really changes the lr.
        base_lrs = [group["base_lr"] for group in self.optimizer.param_groups]
        self.optimizer.load_state_dict(state["optimizer"])
        for group, base_lr in zip(self.optimizer.param_groups, base_lrs, strict=True):
            group["base_lr"] = base_lr
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        restore_rng_state(state["rng"])
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        position = state.get("epoch_position")
        if position:
            self._restore_position(position)
        self.resumed_from = {"epoch": self.epoch, "step": self.step,
                             "batches_done": self.batches_done}  # fmt: skip

    def _restore_position(self, position: dict[str, Any]) -> None:
        """Continue inside an epoch: its order, batches done, generators, RNGs and sums."""
        if (position["world_size"] != self.dist.world_size
                or position["batch_size"] != self.train["batch_size"]):  # fmt: skip
            raise BadInput(
                f"{self.workdir / CHECKPOINT_NAME} was written inside epoch {self.epoch + 1} "
                f"by {position['world_size']} process(es) with batch size "
                f"{position['batch_size']}: resume with the same processes and batch size")
        self.batches_done = int(position["batches_done"])
        self.epoch_order = position["order"].numpy()
        self.generator = torch.Generator(device=self.dist.device)
        self.generator.set_state(position["generators"][self.dist.rank])
        restore_rng_state(position["rngs"][self.dist.rank])
        self.totals = dict(position["totals"])
        self.epoch_images = int(position["images"])

    def _batches(self, epoch: int, order=None):
        return training_batches(len(self.dataset), self.batch_per_rank, self.train["seed"],
                                epoch, self.dist.rank, self.dist.world_size,
                                order=order)  # fmt: skip

    # -- the loop -------------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        """Train until ``train.epochs``; return a summary (also written to the workdir).

        A stop signal (see :mod:`sslkit.engine.stopping`) ends the current step, writes a
        checkpoint and raises :class:`TrainingStopped`.
        """
        self._build()
        if self.dist.is_main:
            self.workdir.mkdir(parents=True, exist_ok=True)
            remove_stale_temp_files(self.workdir)
            with atomic_path(self.workdir / "config.yaml") as tmp:
                tmp.write_text(yaml.safe_dump(self.config, sort_keys=False))
            forget_steps_after(self.workdir / "metrics.jsonl", self.step)
        tensorboard = self.workdir / "tensorboard" if self.train["tensorboard"] else None
        epochs = self.train["epochs"]
        started = time.perf_counter()
        self.images_seen = 0
        last: dict[str, float] = {}
        self.schedule = CheckpointSchedule.from_train(self.train)
        with (
            StopSignals(self.handle_signals) as stop,
            MetricsLog(self.workdir / "metrics.jsonl", self.dist.is_main, tensorboard) as log,
            TrainingProgress(self.show_progress, epochs * self.steps_per_epoch) as progress,
        ):
            log.write({
                "kind": "start", "epoch": self.epoch, "step": self.step,
                "world_size": self.dist.world_size, "device": str(self.dist.device),
                **({"resumed_from": self.resumed_from} if self.resumed_from else {}),
            })  # fmt: skip
            while self.epoch < epochs:
                if self.batches_done == 0:
                    self._start_epoch()
                if not self._train_steps(log, progress, stop):
                    self._stop(stop)
                last = self._end_epoch()
                if self.monitor is not None and self.monitor.due(self.epoch, epochs):
                    last = {**last, **self.monitor.measure(self.method.encoder(),
                                                           self.dist.device)}  # fmt: skip
                log.write({"kind": "epoch", "epoch": self.epoch, "step": self.step, **last})
                # every rank decides alike (a clock or a signal seen by one rank counts)
                stopping, due = any_rank([stop.requested is not None,
                                          self.schedule.due_at_epoch_end(self.epoch, epochs,
                                                                         self.step)],
                                         self.dist.device)  # fmt: skip
                if stopping or due:
                    self._save()
                if stopping:
                    self._stop(stop, saved=True)
        elapsed = time.perf_counter() - started
        summary = {
            "checkpoint": str(self.workdir / CHECKPOINT_NAME),
            "method": self.config["method"]["name"],
            "arch": self.config["model"]["arch"],
            "data": self.dataset.spec,
            "dataset_fingerprint": self.dataset.fingerprint(),
            "skipped_images": list(self.dataset.skipped_images),
            "epochs": self.epoch,
            "steps": self.step,
            "resumed_from": self.resumed_from,
            "seconds": round(elapsed, 3),
            "images_per_second": round(self.images_seen * self.dist.world_size / elapsed, 2)
            if elapsed > 0 and self.images_seen else None,
            "final": last,
        }  # fmt: skip
        return summary

    def _start_epoch(self) -> None:
        """A fresh epoch: its augmentation generator, the method's epoch start (E-step)."""
        self.generator = _seeded_generator(self.dist.device, self.train["seed"], self.epoch,
                                           self.dist.rank)  # fmt: skip
        self.totals, self.epoch_images = {}, 0
        self.epoch_order = None
        self.method.train()
        self.method.on_epoch_start(EpochContext(
            epoch=self.epoch, epochs=self.train["epochs"], dist=self.dist,
            generator=self.generator, extract_features=self._extract_features,
        ))  # fmt: skip

    def _stop(self, stop: StopSignals, saved: bool = False) -> None:
        """Write the checkpoint (unless ``saved``) and end with :class:`TrainingStopped`."""
        if not saved:
            self._save()
        epoch = self.epoch + 1 if self.batches_done else self.epoch  # the last step's epoch
        raise TrainingStopped(stop.requested or "a signal to another process", epoch,
                              self.step, str(self.workdir / CHECKPOINT_NAME),
                              main=self.dist.is_main)  # fmt: skip

    def _train_steps(self, log: MetricsLog, progress: TrainingProgress,
                     stop: StopSignals) -> bool:  # fmt: skip
        """The epoch's remaining steps; False when a stop signal ends it early (a checkpoint
        is then due at once)."""
        device = self.dist.device
        self.method.train()
        order = self.epoch_order
        if order is None:
            order = epoch_order(len(self.dataset), self.train["seed"], self.epoch)
        self.epoch_order = order
        batches = self._batches(self.epoch, order)
        autocast = torch.autocast("cuda", dtype=torch.float16) if self.use_amp else nullcontext()
        window_start, window_images = time.perf_counter(), 0
        remaining = batches[self.batches_done:]
        for images, indices in iterate_images(self.dataset, remaining, self.train["num_workers"]):
            position = self.batches_done
            epoch_position = self.epoch + (position / len(batches)
                                           if self.train["schedule_unit"] == "step" else 0)
            factor = lr_factor(self.train, epoch_position)
            apply_lr(self.optimizer, factor)
            ctx = StepContext(self.epoch, self.step, self.train["epochs"], len(batches),
                              factor, self.dist, self.generator,
                              lr=self.base_lr * factor)  # fmt: skip
            batch = self._to_batch(images, indices, self.generator)
            inner = self.method.inner_step(batch, ctx)
            with autocast:
                outputs = self.model(batch, ctx)
            loss = outputs["loss"]
            if not torch.isfinite(loss.detach()):
                raise TrainingDiverged(
                    f"loss is {loss.item()} at epoch {self.epoch + 1} step {self.step}: lower "
                    f"the lr; the last good checkpoint is {self.workdir / CHECKPOINT_NAME}"
                )
            self.optimizer.zero_grad(set_to_none=True)
            if self.scaler is not None:
                self.scaler.scale(loss).backward()
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                loss.backward()
                self.optimizer.step()
            self.method.after_optimizer_step(ctx)
            self.step += 1
            self.batches_done += 1
            self.epoch_images += len(images)
            self.images_seen += len(images)
            window_images += len(images)
            stats = {k: float(v.detach()) for k, v in outputs.items()} | inner
            for key, value in stats.items():
                self.totals[key] = self.totals.get(key, 0.0) + value
            last_step = self.batches_done == len(batches)
            if self.step % self.train["log_every"] == 0 or last_step:
                now = time.perf_counter()
                rate = window_images * self.dist.world_size / max(now - window_start, 1e-9)
                window_start, window_images = now, 0
                shown = {"loss": stats["loss"], "lr": self.optimizer.param_groups[0]["lr"],
                         "img/s": rate}  # fmt: skip
                log.write({"kind": "step", "epoch": self.epoch + 1, "step": self.step,
                           "lr": shown["lr"], "images_per_second": round(rate, 2),
                           **{k: round(v, 6) for k, v in stats.items()}})  # fmt: skip
                progress.update(self.epoch * len(batches) + self.batches_done,
                                f"{self.epoch + 1}/{self.train['epochs']}", shown)  # fmt: skip
            if last_step:
                break
            stopping, due = any_rank([stop.requested is not None,
                                      self.schedule.due_after_step(self.step)],
                                     device)  # fmt: skip
            if stopping:
                return False
            if due:
                self._save()
        return True

    def _end_epoch(self) -> dict[str, float]:
        """Close the epoch: its mean loss terms; the position moves to the next epoch."""
        count = max(self.batches_done, 1)
        means = {key: value / count for key, value in self.totals.items()}
        if not math.isfinite(means.get("loss", 0.0)):
            raise TrainingDiverged(f"mean loss is not finite in epoch {self.epoch + 1}")
        self.epoch += 1
        self.batches_done = 0
        self.epoch_order = None
        return means

    def _to_batch(self, images: torch.Tensor, indices: torch.Tensor,
                  generator: torch.Generator) -> Batch:  # fmt: skip
        device = self.dist.device
        images = images.to(device, non_blocking=True)
        views = make_views(images, self.view_spec, generator)
        if self.channels_last:
            views = [v.contiguous(memory_format=torch.channels_last) for v in views]
        return Batch(views=views, indices=indices.to(device))

    def _extract_features(self, network: torch.nn.Module) -> torch.Tensor:
        """Embed the whole training set with ``network`` in eval mode (for E-steps)."""
        was_training = network.training
        network.eval()
        try:
            return embed_dataset(network, self.dataset, self.eval_transform, self.dist.device,
                                 batch_size=max(self.batch_per_rank, 256),
                                 num_workers=self.train["num_workers"])  # fmt: skip
        finally:
            network.train(was_training)

    def _save(self) -> None:
        """Write the checkpoint (rank 0; every rank takes part inside an epoch)."""
        position = None
        if self.batches_done:  # inside an epoch: every rank's generator and RNG
            generators = all_gather_objects(self.generator.get_state())
            rngs = all_gather_objects(rng_state())
            position = epoch_position(batches_done=self.batches_done,
                                      batch_size=self.train["batch_size"],
                                      order=self.epoch_order, generators=generators,
                                      rngs=rngs, totals=self.totals,
                                      images=self.epoch_images)  # fmt: skip
        self.schedule.saved()
        if not self.dist.is_main:
            distributed.barrier()
            return
        payload = training_payload(
            method=self.method, config=self.config, epoch=self.epoch, step=self.step,
            optimizer=self.optimizer, scaler=self.scaler, data_info=self.method.data_info,
            dataset_fingerprint=self.dataset.fingerprint(), epoch_position=position,
        )  # fmt: skip
        path = write_training_checkpoint(self.workdir, payload)
        if self.train["keep_checkpoints"] and position is None:
            import shutil

            with atomic_path(self.workdir / kept_checkpoint_name(self.epoch)) as tmp:
                shutil.copyfile(path, tmp)
        distributed.barrier()
        self.curves.update()
