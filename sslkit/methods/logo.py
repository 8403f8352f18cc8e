"""LoGo: leverage local and global crops (Zhang et al., CVPR 2022), an add-on.

The host trains on two global and two local crops with its own loss over the directed
crop pairs in which locals are only queries (global-global and local-to-global
attraction; :mod:`sslkit.methods.multicrop`, switched on by this add-on's
``host_defaults``). LoGo adds the local-to-local *dissimilarity*: a small MLP regressor
``f`` scores a pair of local embeddings, is trained to score the two local crops of one
image above local crops of different images, and the encoder is pushed to lower the
score of its own two local crops. It follows the paper and the official MoCo-LoGo code
(ztt1024/LoGo-SSL).

Per step, with ``z1, z2`` the normalised local embeddings and ``rev`` the batch reversed:

* **A, regressor step**: noisy positive pairs ``[z1 + e_a, z2 + e_b]``,
  ``[z2 + e_a, z1 + e_b]`` (``e ~ N(0, (0.3/sqrt(d))^2)``) and negative pairs
  ``[z1, rev(z2)]``, ``[z2, rev(z1)]``, all detached;
  ``L_w = mean[1/2 sp(-f(P12)) + 1/2 sp(-f(P21)) + 1/2 sp(f(N12)) + 1/2 sp(f(N21))]``
  (``sp`` = softplus), one SGD step of the regressor alone (each pair set is its own
  BatchNorm batch, as in the code);
* **L2L**: ``L_L2L = mean sp(f([z1, z2]))`` with gradient into the encoder.

``mode: three_step`` (default; the official MoCo-LoGo update) runs A and then B, an
extra step of a second SGD optimiser over the host's parameters with the L2L gradient
clipped to ``clip_ratio x`` the main step's previous gradient norm (0 at each epoch's
first step), before the host's main step (C) — in :meth:`LoGo.inner_step`, on its own
forward of the local crops. ``mode: joint`` (SimSiam-LoGo, by analogy: no official code)
trains the regressor on the main forward's local embeddings and adds ``weight x L_L2L`` to
the host's loss (lambda = 1e-4 in the paper's summary).

Differences from the official code, on purpose: the regressor is shared by all
processes (its gradients are averaged; the code trains one copy per GPU); the
L2L gradients are averaged across processes before clipping (DDP does that in the code);
local crops default to scale [0.08, r_l] as the paper says (the code's lower bound is
0.05); the colour pipeline runs once (the code colour-augments CIFAR crops twice). Kept as
the code does, with switches: two momentum updates of a momentum host per step
(``momentum_updates``: 2, one in each of the code's two forwards) and a second optimiser
stepping the encoder (its own momentum, weight decay applied twice). The main step's
gradient is not clipped at 100 (the code's clip, never active). ``l2l: false`` is the
paper's "w/o L2L" ablation (multi-crop only); the host's ``crop_pairs: all`` is the
SwAV-style multi-crop baseline.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sslkit.distributed import all_reduce_gradients
from sslkit.errors import BadInput
from sslkit.methods.addons import AddOn, Recorded
from sslkit.methods.base import Batch, EpochContext, Method, StepContext, hp

LOGO_MODES = ("three_step", "joint")


class LocalSimilarityRegressor(nn.Module):
    """LoGo's affinity ``f([z_a, z_b])``: ``Linear-BN-ReLU-Linear-BN-ReLU-Linear(1)``.

    Input ``B x 2d`` (two ``d``-dim local embeddings side by side), output ``B x 1``;
    higher means "the two crops look alike" (``Regressor_softplus``).
    """

    def __init__(self, embedding_dim: int, hidden_dim: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(2 * embedding_dim, hidden_dim), nn.BatchNorm1d(hidden_dim), nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim), nn.BatchNorm1d(hidden_dim), nn.ReLU(),
            nn.Linear(hidden_dim, 1),
        )  # fmt: skip

    def forward(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([first, second], dim=1))


def regressor_loss(regressor: nn.Module, z1: torch.Tensor, z2: torch.Tensor,
                   noise_a: torch.Tensor, noise_b: torch.Tensor) -> torch.Tensor:  # fmt: skip
    """The regressor's logistic objective ``L_w`` (see the module docstring).

    ``z1, z2`` (``b x d``) are detached here; ``noise_a, noise_b`` are the ``b x d``
    Gaussian perturbations of the positive pairs. At a regressor that outputs 0 everywhere
    the value is ``2 ln 2``.
    """
    z1, z2 = z1.detach(), z2.detach()
    positive = (0.5 * F.softplus(-regressor(z1 + noise_a, z2 + noise_b))
                + 0.5 * F.softplus(-regressor(z2 + noise_a, z1 + noise_b)))  # fmt: skip
    negative = (0.5 * F.softplus(regressor(z1, z2.flip(0)))
                + 0.5 * F.softplus(regressor(z2, z1.flip(0))))  # fmt: skip
    return (positive + negative).mean()


def local_to_local_loss(regressor: nn.Module, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """``L_L2L = mean_i softplus(f([z1_i, z2_i]))``: low when the regressor finds the two
    local crops of an image unalike (gradient reaches ``z1`` and ``z2``)."""
    return F.softplus(regressor(z1, z2)).mean()


class LoGo(AddOn):
    """The LoGo regressor, its optimisers and the local-to-local term (module docstring)."""

    name = "logo"
    description = "LoGo: local-global attraction, learned local-local dissimilarity (2022)"
    online_views_needed = 4
    local_views_needed = 2
    check_settings = {"regressor_dim": 32}
    host_defaults = {"multi_crop": True}
    augment_defaults = {"crop_scale": [0.4, 1.0]}  # global crops [r_g = 0.4, 1]

    @dataclass
    class Config:
        """LoGo hyper-parameters (defaults: the official MoCo-LoGo ImageNet-100 code)."""

        weight: float = hp(1e-4, "lambda of L_L2L in mode joint (SimSiam-LoGo)")
        mode: str = hp("three_step", "three_step (official MoCo-LoGo: separate clipped L2L "
                       "step) or joint (loss + weight x L_L2L)",
                       choices=("three_step", "joint"))  # fmt: skip
        l2l: bool = hp(True, "the local-to-local term; false = the 'w/o L2L' ablation")
        clip_ratio: float = hp(0.015, "three_step: L2L gradient norm <= ratio x previous "
                               "main-step gradient norm")  # fmt: skip
        regressor_dim: int = hp(256, "hidden width of the regressor", low=1)
        regressor_lr: float = hp(0.03, "regressor lr (constant; official: 0.03 x batch/256)")
        regressor_momentum: float = hp(0.9, "regressor SGD momentum")
        regressor_weight_decay: float = hp(1e-4, "regressor SGD weight decay")
        noise_std: float = hp(0.3, "positive-pair noise std x sqrt(1/embedding dim)")
        l2l_momentum: float = hp(0.9, "three_step: SGD momentum of the L2L optimiser")
        l2l_weight_decay: float = hp(1e-4, "three_step: weight decay of the L2L optimiser")
        momentum_updates: int = hp(2, "three_step: momentum-encoder updates per step (2 as "
                                   "the official code, 1 = once)", low=1)  # fmt: skip

    def __init__(self, config: Config, host: Method) -> None:
        super().__init__(config, host)
        if config.mode not in LOGO_MODES:
            raise BadInput(f"logo: method.logo_mode must be one of {', '.join(LOGO_MODES)}")
        if config.clip_ratio < 0 or config.momentum_updates not in (1, 2):
            raise BadInput("logo: method.logo_clip_ratio must be >= 0 and "
                           "method.logo_momentum_updates 1 or 2")  # fmt: skip
        self.embedding_dim = int(host.embedding_dim())
        self.regressor = LocalSimilarityRegressor(self.embedding_dim, config.regressor_dim)
        self.regressor_optimizer = torch.optim.SGD(
            self.regressor.parameters(), lr=config.regressor_lr,
            momentum=config.regressor_momentum, weight_decay=config.regressor_weight_decay)
        self.l2l_optimizer: torch.optim.Optimizer | None = None  # over the host, on first use
        self._host_parameters: list[nn.Parameter] = []
        self._pending_l2l_state: dict[str, Any] | None = None
        self.previous_grad_norm = 0.0  # G_prev: the main step's gradient norm

    # -- what the host's optimisers must leave alone -------------------------------------
    def own_parameters(self) -> list[nn.Parameter]:
        """The regressor: trained by the add-on's own SGD."""
        return list(self.regressor.parameters())

    # -- the two LoGo steps --------------------------------------------------------------
    def _local_pair(self, embeddings: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        z1, z2 = embeddings[:2]
        return F.normalize(z1, dim=1), F.normalize(z2, dim=1)

    def train_regressor(self, z1: torch.Tensor, z2: torch.Tensor, ctx: StepContext) -> float:
        """Step A: one SGD step of the regressor on detached local embeddings."""
        scale = self.config.noise_std / math.sqrt(z1.shape[1])
        noise_a = torch.randn(z1.shape, generator=ctx.generator, device=z1.device) * scale
        noise_b = torch.randn(z1.shape, generator=ctx.generator, device=z1.device) * scale
        self.regressor.train()
        with torch.enable_grad():
            loss = regressor_loss(self.regressor, z1, z2, noise_a, noise_b)
            self.regressor_optimizer.zero_grad(set_to_none=True)
            loss.backward()
        all_reduce_gradients(self.own_parameters(), ctx.dist)
        self.regressor_optimizer.step()
        self.regressor_optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    def _l2l_optimizer(self, host: Method) -> torch.optim.Optimizer:
        """The second SGD over the host's trainable parameters (built on first use)."""
        if self.l2l_optimizer is None:
            own = {id(p) for p in self.own_parameters()}
            self._host_parameters = [p for name, p in host.named_parameters()
                                     if p.requires_grad and id(p) not in own
                                     and not name.startswith("addons.")]  # fmt: skip
            self.l2l_optimizer = torch.optim.SGD(
                self._host_parameters, lr=0.0, momentum=self.config.l2l_momentum,
                weight_decay=self.config.l2l_weight_decay)
            if self._pending_l2l_state is not None:
                self.l2l_optimizer.load_state_dict(self._pending_l2l_state)
                self._pending_l2l_state = None
        return self.l2l_optimizer

    def inner_step(self, host: Method, batch: Batch, ctx: StepContext) -> dict[str, float]:
        """Three-step mode: steps A and B on a forward of the two local crops."""
        if self.config.mode != "three_step" or not self.config.l2l:
            return {}
        optimizer = self._l2l_optimizer(host)
        if self.config.momentum_updates == 2:
            host.update_target(ctx)  # the official code's extra update (in its L2L forward)
        first, second = batch.views[-host.local_views():][:2]
        z1, z2 = F.normalize(host.embed(first), dim=1), F.normalize(host.embed(second), dim=1)
        regressor = self.train_regressor(z1, z2, ctx)
        l2l = local_to_local_loss(self.regressor, z1, z2)
        optimizer.zero_grad(set_to_none=True)
        l2l.backward()
        self.regressor_optimizer.zero_grad(set_to_none=True)  # its L2L gradients are unused
        all_reduce_gradients(self._host_parameters, ctx.dist)
        limit = self.config.clip_ratio * self.previous_grad_norm
        torch.nn.utils.clip_grad_norm_(self._host_parameters, limit)
        for group in optimizer.param_groups:
            group["lr"] = ctx.lr
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return {"loss/regressor": regressor, "loss/l2l": float(l2l.detach())}

    def terms(self, recorded: Recorded, batch: Batch,
              ctx: StepContext) -> dict[str, torch.Tensor]:  # fmt: skip
        """Joint mode: step A on the main forward's local embeddings, then ``L_L2L``."""
        if self.config.mode != "joint" or not self.config.l2l:
            return {}
        if len(recorded.embeddings) < 4:
            raise BadInput("logo: the host records no local embeddings (it has no "
                           "embedding_head): use mode three_step")  # fmt: skip
        z1, z2 = self._local_pair(recorded.embeddings[-2:])
        self.train_regressor(z1, z2, ctx)
        return {"l2l": local_to_local_loss(self.regressor, z1, z2)}

    def after_optimizer_step(self, host: Method, ctx: StepContext) -> None:
        """Record G_prev, the (un-clipped) gradient norm of the main step."""
        if self.config.mode != "three_step" or not self.config.l2l:
            return
        own = {id(p) for p in self.own_parameters()}
        grads = [p.grad for name, p in host.named_parameters()
                 if p.grad is not None and id(p) not in own
                 and not name.startswith("addons.")]  # fmt: skip
        norm = torch.linalg.vector_norm(torch.stack(
            [torch.linalg.vector_norm(g.float()) for g in grads])) if grads else 0.0  # fmt: skip
        self.previous_grad_norm = float(norm)

    def on_epoch_start(self, host: Method, ctx: EpochContext) -> None:
        """G_prev restarts at 0 every epoch (so the first L2L step is clipped to nothing)."""
        self.previous_grad_norm = 0.0

    # -- checkpointing ---------------------------------------------------------------------
    def get_extra_state(self) -> dict[str, Any]:
        """The optimisers' states and G_prev (so ``--resume`` continues exactly)."""
        l2l = (self.l2l_optimizer.state_dict() if self.l2l_optimizer is not None
               else self._pending_l2l_state)  # fmt: skip
        return {"regressor_optimizer": self.regressor_optimizer.state_dict(),
                "l2l_optimizer": l2l, "previous_grad_norm": self.previous_grad_norm}  # fmt: skip

    def set_extra_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`get_extra_state`; the L2L optimiser's once it exists."""
        state = copy.deepcopy(state)  # own buffers, never the caller's tensors
        self.regressor_optimizer.load_state_dict(state["regressor_optimizer"])
        self.previous_grad_norm = float(state["previous_grad_norm"])
        if state["l2l_optimizer"] is not None:
            if self.l2l_optimizer is not None:
                self.l2l_optimizer.load_state_dict(state["l2l_optimizer"])
            else:
                self._pending_l2l_state = state["l2l_optimizer"]
