"""``check_method``: does a method keep the plugin contract? (as scikit-learn's ``check_estimator``)

Each rule is checked in seconds on tiny synthetic images (random pixels, a quarter-width
ResNet-18 at 16 px) and a broken rule raises :class:`ContractError`, an ``AssertionError``
whose message starts with the rule's name:

* ``builds_from_config_defaults``: ``Config()`` has a default and a help text for every
  field and the method builds from it;
* ``step_returns_finite_scalar_loss``: ``training_step`` returns a finite 0-d ``"loss"``
  and only detached 0-d ``"loss/<term>"`` values beside it;
* ``gradient_reaches_backbone``: the loss's gradient reaches the backbone;
* ``embed_matches_embedding_dim``: ``encoder()`` gives ``backbone.feature_dim`` features
  (``--layer backbone``) and ``embed()`` unit rows of ``embedding_dim()`` (``--layer head``);
* ``builds_from_checkpoint_metadata``: after training, the method rebuilds from what a
  checkpoint records (its config as plain values, the dataset facts, the state dict read
  with ``torch.load(weights_only=True)``) and embeds exactly as before;
* ``state_dict_round_trip_resumes_exactly``: a fresh instance loaded with the state dict
  (and the optimiser's) takes the next epoch's step bit-identically (what ``--resume``
  needs: no state outside the state dict);
* ``same_seed_gives_same_step``: the same seed and step generator give the same step,
  whatever the global random generators hold (randomness comes from ``ctx.generator``);
* ``hosts_addons_on_its_online_views``: an add-on sees at least ``online_views()``
  representations with gradient per step, and its term trains the backbone;
* ``two_processes_stay_in_sync`` (``processes=2``): two gloo processes under
  DistributedDataParallel keep identical weights and method state.

A method may set ``check_settings`` (config values for this tiny data, e.g. a small queue);
``overrides`` adds more. Use it in a plugin's tests::

    from sslkit.testing import check_method
    from my_plugin import MyMethod

    def test_contract():
        check_method(MyMethod)
"""

from __future__ import annotations

import copy
import dataclasses
import io
import random
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from sslkit.config import TRAIN_DEFAULTS, method_config
from sslkit.data.base import DataInfo
from sslkit.data.views import eval_transform, make_views
from sslkit.distributed import DistEnv
from sslkit.methods.addons import AddOn, AddOnHost, Recorded, compose
from sslkit.methods.base import Batch, EpochContext, Method, StepContext, hp

RULES = (
    "builds_from_config_defaults",
    "step_returns_finite_scalar_loss",
    "gradient_reaches_backbone",
    "embed_matches_embedding_dim",
    "builds_from_checkpoint_metadata",
    "state_dict_round_trip_resumes_exactly",
    "same_seed_gives_same_step",
    "hosts_addons_on_its_online_views",
    "two_processes_stay_in_sync",
)
ARCH = "resnet18-w32"  # a quarter of ResNet-18's compute
IMAGE_SIZE = 16
NUM_IMAGES = 64
BATCH = 8
DEFAULTS_NUM_SAMPLES = 100_000  # a training set every built-in recipe's defaults fit (PCL's k)


class ContractError(AssertionError):
    """A broken rule of the method contract; ``rule`` is its name (also the message's start)."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(f"{rule}: {message}")
        self.rule = rule


def check_method(method_class: type[Method], *, overrides: Mapping[str, Any] | None = None,
                 processes: int = 1,
                 on_rule: Callable[[str], None] | None = None) -> list[str]:  # fmt: skip
    """Check ``method_class`` against every rule (see the module doc); the rules passed.

    ``overrides`` are ``method`` config values on top of the class's ``check_settings``;
    ``processes=2`` adds the two-process gloo rule (a few seconds more); ``on_rule(name)``
    is called as each rule passes. Raises :class:`ContractError` naming the first rule
    broken.
    """
    checker = _Checker(method_class, dict(overrides or {}))
    passed = []
    rules = [rule for rule in RULES if processes > 1 or rule != "two_processes_stay_in_sync"]
    with _one_thread():  # tiny tensors: extra threads only wait for each other
        for rule in rules:
            with _rule(rule):
                if rule == "two_processes_stay_in_sync":
                    _two_processes(method_class, checker.settings, processes)
                else:
                    getattr(checker, rule)()
            passed.append(rule)
            if on_rule is not None:
                on_rule(rule)
    return passed


@contextmanager
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@contextmanager
def _rule(name: str) -> Iterator[None]:
    """Run one rule: a failed assertion, or any exception, becomes its ContractError."""
    try:
        yield
    except ContractError:
        raise
    except AssertionError as exc:
        raise ContractError(name, str(exc) or "assertion failed") from exc
    except Exception as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ContractError(name, f"{exc.__class__.__name__}: {text}") from exc


def synthetic_info(num_samples: int = NUM_IMAGES) -> DataInfo:
    """The dataset facts of the synthetic images (16 px, 4 classes)."""
    return DataInfo("synthetic", num_classes=4, image_size=IMAGE_SIZE, channels=3,
                    mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), num_samples=num_samples)


def synthetic_images(count: int = NUM_IMAGES, seed: int = 0) -> torch.Tensor:
    """``count`` random uint8 images, 3 x 16 x 16."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (count, 3, IMAGE_SIZE, IMAGE_SIZE), generator=generator,
                         dtype=torch.uint8)  # fmt: skip


class _Checker:
    """The single-process rules, on one method class with the check settings."""

    def __init__(self, method_class: type[Method], overrides: dict[str, Any]) -> None:
        self.cls = method_class
        self.overrides = overrides  # the caller's: also used to build from the defaults
        self.settings = {**getattr(method_class, "check_settings", {}), **overrides}
        self.info = synthetic_info()
        self.images = synthetic_images()
        self.env = DistEnv(0, 1, 0, torch.device("cpu"))

    # -- building and stepping, as the engine does ------------------------------------------
    def config(self) -> Any:
        """The method's Config with the check settings."""
        section = {**_plain_config(self.cls.Config()), **self.settings}
        return method_config(self.cls, section)

    def build(self, seed: int = 0) -> Method:
        """A new method on a new backbone, initialised from ``seed``."""
        from sslkit.models.backbones import build_backbone

        torch.manual_seed(seed)
        return self.cls(self.config(), build_backbone(ARCH), self.info).train()

    def optimizer(self, method: Method) -> torch.optim.Optimizer:
        """The engine's optimiser over the method's parameter groups."""
        from sslkit.engine.optim import build_optimizer

        train = {**TRAIN_DEFAULTS, **self.cls.default_train}
        return build_optimizer(method.param_groups(), train, float(train["lr"]))

    def epoch_start(self, method: Method, epoch: int) -> torch.Generator:
        """``on_epoch_start`` with the whole synthetic set; the epoch's step generator."""
        generator = torch.Generator().manual_seed(1000 + epoch)
        images, info = self.images, self.info

        def extract_features(module: torch.nn.Module) -> torch.Tensor:
            was_training = module.training
            module.eval()
            with torch.no_grad():
                features = module(eval_transform(images, info.image_size, info.mean, info.std))
            module.train(was_training)
            return F.normalize(features.float(), dim=1)

        method.on_epoch_start(EpochContext(epoch, 2, self.env, generator, extract_features))
        return generator

    def batch(self, method: Method, generator: torch.Generator, step: int) -> Batch:
        """A batch of views of ``BATCH`` synthetic images (the step's own indices)."""
        indices = torch.arange(step * BATCH, (step + 1) * BATCH) % NUM_IMAGES
        views = make_views(self.images[indices], method.views(_augment(self.cls)), generator)
        return Batch(views=views, indices=indices)

    def step(self, method: Method, optimizer, generator: torch.Generator, epoch: int,
             step: int) -> dict[str, torch.Tensor]:  # fmt: skip
        """One training step as the engine takes it; the step's outputs."""
        ctx = StepContext(epoch, step, 2, 1, 1.0, self.env, generator,
                          lr=optimizer.param_groups[0]["lr"])  # fmt: skip
        batch = self.batch(method, generator, step)
        method.inner_step(batch, ctx)
        outputs = method(batch, ctx)
        optimizer.zero_grad(set_to_none=True)
        outputs["loss"].backward()
        optimizer.step()
        method.after_optimizer_step(ctx)
        return outputs

    def forward(self, method: Method) -> tuple[dict[str, torch.Tensor], StepContext]:
        """The first epoch's start and one step's outputs, without the update."""
        generator = self.epoch_start(method, 0)
        ctx = StepContext(0, 0, 2, 1, 1.0, self.env, generator)
        batch = self.batch(method, generator, 0)
        method.inner_step(batch, ctx)
        return method(batch, ctx), ctx

    def trained(self, seed: int = 0) -> tuple[Method, Any, dict[str, torch.Tensor]]:
        """A method after the first epoch's start and one step; its optimiser and outputs."""
        method = self.build(seed)
        optimizer = self.optimizer(method)
        outputs = self.step(method, optimizer, self.epoch_start(method, 0), 0, 0)
        return method, optimizer, outputs

    # -- the rules ---------------------------------------------------------------------------
    def builds_from_config_defaults(self) -> None:
        """Every Config field has a default and a help; the method builds from them."""
        from sslkit.models.backbones import build_backbone

        for field in dataclasses.fields(self.cls.Config):
            missing = dataclasses.MISSING
            if field.default is missing and field.default_factory is missing:
                raise AssertionError(f"Config.{field.name} has no default: declare it with hp()")
            if not field.metadata.get("help"):
                raise AssertionError(f"Config.{field.name} has no help text: declare it with "
                                     "hp(default, 'one line')")  # fmt: skip
        defaults = {**_plain_config(self.cls.Config()), **self.overrides}
        self.cls(method_config(self.cls, defaults), build_backbone(ARCH),
                 synthetic_info(DEFAULTS_NUM_SAMPLES))

    def builds_from_checkpoint_metadata(self) -> None:
        """Config as plain values + data info + weights-only state dict -> the same method."""
        from sslkit.models.backbones import build_backbone

        method, _, _ = self.trained()
        payload = {"config": {"method": {"name": self.cls.name, **_plain_config(method.config)}},
                   "data_info": dataclasses.asdict(method.data_info),
                   "method_state": method.state_dict()}  # fmt: skip
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        buffer.seek(0)
        try:
            saved = torch.load(buffer, weights_only=True)
        except Exception as exc:
            raise AssertionError("the config or state dict holds objects torch.load("
                                 f"weights_only=True) refuses: {str(exc).splitlines()[0]} "
                                 "(keep state in tensors and plain values)") from exc
        torch.manual_seed(123)
        rebuilt = self.cls(method_config(self.cls, saved["config"]["method"]),
                           build_backbone(ARCH), DataInfo.from_dict(saved["data_info"]))
        rebuilt.load_state_dict(saved["method_state"])
        images = self.view_of_test_images()
        method.eval(), rebuilt.eval()
        with torch.no_grad():
            same = torch.equal(method.embed(images), rebuilt.embed(images))
        assert same, "the rebuilt method embeds differently from the one that was saved"

    def step_returns_finite_scalar_loss(self) -> None:
        """``{"loss": finite 0-d tensor, "loss/<term>": detached 0-d}``."""
        method = self.build()
        outputs, _ = self.forward(method)
        assert isinstance(outputs, dict) and "loss" in outputs, \
            'training_step must return a dict with a "loss" tensor'
        for key, value in outputs.items():
            assert isinstance(value, torch.Tensor) and value.ndim == 0, \
                f"{key!r} must be a 0-d tensor, got {type(value).__name__}"
            assert torch.isfinite(value).item(), f"{key!r} is not finite: {value.item()}"
            if key != "loss":
                assert key.startswith("loss/") and value.grad_fn is None, \
                    f"{key!r}: other values must be detached terms named 'loss/<term>'"

    def gradient_reaches_backbone(self) -> None:
        """The loss has a gradient, and it is non-zero on some backbone parameter."""
        method = self.build()
        outputs, _ = self.forward(method)
        loss = outputs["loss"]
        assert loss.requires_grad, "the loss has no gradient (computed without autograd?)"
        method.zero_grad(set_to_none=True)
        loss.backward()
        assert _backbone_gradient(method) > 0, "the loss's gradient does not reach the backbone"

    def embed_matches_embedding_dim(self) -> None:
        """Both layers give what they declare."""
        method = self.build().eval()
        images = self.view_of_test_images()
        with torch.no_grad():
            features = method.encoder()(images)
            embedding = method.embed(images)
        width = int(method.backbone.feature_dim)
        assert tuple(features.shape) == (BATCH, width), \
            f"encoder() gives {tuple(features.shape)} for {BATCH} images, not ({BATCH}, {width})"
        dim = method.embedding_dim()
        assert tuple(embedding.shape) == (BATCH, dim), \
            f"embed() gives {tuple(embedding.shape)} but embedding_dim() says {dim}"
        norms = embedding.norm(dim=1)
        assert torch.allclose(norms, torch.ones_like(norms), atol=1e-4), \
            "embed() must return L2-normalised rows"

    def state_dict_round_trip_resumes_exactly(self) -> None:
        """Epoch 1's step after a state-dict round trip equals the uninterrupted one."""
        method, optimizer, _ = self.trained(seed=0)
        state = _weights_only_copy(method.state_dict())
        optimizer_state = copy.deepcopy(optimizer.state_dict())
        rng = torch.get_rng_state()
        straight = self.step(method, optimizer, self.epoch_start(method, 1), 1, 1)

        resumed = self.build(seed=1)  # other initial weights: only the state dict may matter
        resumed.load_state_dict(state)
        resumed_optimizer = self.optimizer(resumed)
        resumed_optimizer.load_state_dict(optimizer_state)
        torch.set_rng_state(rng)
        again = self.step(resumed, resumed_optimizer, self.epoch_start(resumed, 1), 1, 1)
        assert torch.equal(straight["loss"].detach(), again["loss"].detach()), \
            (f"after loading the state dict the next step's loss is {again['loss'].item()!r}, "
             f"not {straight['loss'].item()!r}: some state lives outside the state dict")
        _assert_same_state(method, resumed, "after resuming from the state dict")

    def same_seed_gives_same_step(self) -> None:
        """Two runs from one seed agree bit for bit, whatever the global generators hold."""
        runs = []
        for noise in (1, 2):
            method = self.build(seed=0)
            optimizer = self.optimizer(method)
            generator = self.epoch_start(method, 0)
            torch.manual_seed(noise), random.seed(noise), np.random.seed(noise)
            outputs = self.step(method, optimizer, generator, 0, 0)
            runs.append((method, outputs["loss"].detach()))
        (first, loss_1), (second, loss_2) = runs
        assert torch.equal(loss_1, loss_2), \
            (f"the same step gave losses {loss_1.item()!r} and {loss_2.item()!r}: draw random "
             "numbers from ctx.generator, not from torch's, numpy's or Python's global ones")
        _assert_same_state(first, second, "after the same step")

    def hosts_addons_on_its_online_views(self) -> None:
        """A probe add-on reads ``online_views()`` representations and trains the backbone."""
        if issubclass(self.cls, AddOnHost):
            return  # already a host with add-ons: its step exercised the hosting
        method = self.build()
        claimed = method.online_views()
        assert claimed >= 1, f"online_views() is {claimed}: at least the first view is online"
        probe = _probe_addon(min(2, claimed))
        host_cls = compose(self.cls, [probe])
        torch.manual_seed(0)
        from sslkit.models.backbones import build_backbone

        config = method_config(host_cls, {**_plain_config(host_cls.Config()), **self.settings})
        host = host_cls(config, build_backbone(ARCH), self.info).train()
        generator = self.epoch_start(host, 0)
        host.zero_grad(set_to_none=True)
        host(self.batch(host, generator, 0), StepContext(0, 0, 2, 1, 1.0, self.env, generator))
        seen = host.addons[probe.name].seen
        assert len(seen) >= claimed, (f"online_views() says {claimed} but the step ran "
                                      f"{len(seen)} view(s) through self.backbone with "
                                      "gradient")  # fmt: skip
        width = int(host.backbone.feature_dim)
        assert all(shape == (BATCH, width) for shape in seen), \
            f"the online representations are {seen}, not {BATCH} x {width}"
        host.addons[probe.name].term.backward()
        assert _backbone_gradient(host) > 0, "an add-on's term does not reach the backbone"

    # -- helpers -----------------------------------------------------------------------------
    def view_of_test_images(self) -> torch.Tensor:
        """``BATCH`` synthetic images in the evaluation view."""
        info = self.info
        return eval_transform(self.images[:BATCH], info.image_size, info.mean, info.std)


def _augment(method_class: type[Method]) -> dict[str, Any]:
    return copy.deepcopy(dict(method_class.default_augment))


def _plain_config(config: Any) -> dict[str, Any]:
    """A Config as the plain values a checkpoint records."""
    return {field.name: copy.deepcopy(getattr(config, field.name))
            for field in dataclasses.fields(config)}  # fmt: skip


def _weights_only_copy(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` through ``torch.save`` / ``torch.load(weights_only=True)``."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def _backbone_gradient(method: Method) -> float:
    return float(sum(p.grad.abs().sum() for p in method.backbone.parameters()
                     if p.grad is not None))  # fmt: skip


def _assert_same_state(first: Method, second: Method, when: str) -> None:
    """Every parameter and buffer of the two methods is bit-identical."""
    theirs = second.state_dict()
    for name, value in first.state_dict().items():
        other = theirs.get(name)
        if isinstance(value, torch.Tensor):
            assert isinstance(other, torch.Tensor) and torch.equal(value, other), \
                f"{name} differs {when}"


def _probe_addon(views: int) -> type[AddOn]:
    """A minimal add-on reading the first ``views`` online representations; it keeps what
    it saw (``seen``: the shapes of every representation) and its term (``term``)."""

    class Probe(AddOn):
        """The mean square of the first online representations (the hosting check's term)."""

        name = "contract_probe"
        description = "sslkit.testing's probe"
        online_views_needed = views

        @dataclasses.dataclass
        class Config:
            """The probe's only setting."""

            weight: float = hp(1.0, "weight of the probe term")

        def terms(self, recorded: Recorded, batch: Batch,
                  ctx: StepContext) -> dict[str, torch.Tensor]:  # fmt: skip
            self.seen = [tuple(r.shape) for r in recorded.representations]
            self.term = sum(r.pow(2).mean() for r in recorded.representations[:views])
            return {"probe": self.term}

    return Probe


def _two_processes(method_class: type[Method], settings: dict[str, Any],
                   processes: int) -> None:  # fmt: skip
    """Two gloo processes (forked, so any class works) take a step under DDP; their weights
    and method state (BatchNorm statistics aside, which stay per process) must agree."""
    import tempfile
    from pathlib import Path

    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as folder:
        mp.start_processes(_distributed_step, args=(method_class, settings, processes, folder),
                           nprocs=processes, start_method="fork")  # fmt: skip
        states = [torch.load(Path(folder) / f"rank{r}.pt", weights_only=True)
                  for r in range(processes)]  # fmt: skip
    for name, value in states[0].items():
        if name.endswith(("running_mean", "running_var", "num_batches_tracked")):
            continue
        for other in states[1:]:
            assert torch.equal(value, other[name]), \
                f"{name} differs between the processes after a step"


def _distributed_step(rank: int, method_class: type[Method], settings: dict[str, Any],
                      processes: int, folder: str) -> None:  # fmt: skip
    """One process of :func:`_two_processes`: join, build, one DDP step, save the state."""
    from pathlib import Path

    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank,
                            world_size=processes)  # fmt: skip
    try:
        checker = _Checker(method_class, {})
        checker.settings = settings
        checker.env = DistEnv(rank, processes, 0, torch.device("cpu"))
        method = checker.build(seed=0)
        optimizer = checker.optimizer(method)
        ignored = method.ddp_ignored_parameters()
        if ignored:
            torch.nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(
                method, ignored)  # fmt: skip
        model = torch.nn.parallel.DistributedDataParallel(method, broadcast_buffers=False)
        generator = checker.epoch_start(method, 0)
        generator.manual_seed(2000 + rank)
        ctx = StepContext(0, 0, 2, 1, 1.0, checker.env, generator)
        batch = checker.batch(method, generator, rank)
        method.inner_step(batch, ctx)
        outputs = model(batch, ctx)
        optimizer.zero_grad(set_to_none=True)
        outputs["loss"].backward()
        optimizer.step()
        method.after_optimizer_step(ctx)
        torch.save(method.state_dict(), Path(folder) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()
