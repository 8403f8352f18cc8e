"""Projection heads on top of a backbone's pooled feature: Linear, MLP, NormLinear, NormMLP.

:func:`build_head` is the one place a method turns a ``head`` hyper-parameter
(:data:`HEAD_KINDS`) into a module, so every method offers the same choices.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sslkit.errors import BadInput

HEAD_KINDS = ("linear", "mlp", "norm_linear", "norm_mlp")


def projection_head(
    in_dim: int, out_dim: int, hidden_dim: int | None = None, batch_norm: bool = False
) -> nn.Module:
    """``Linear(in, out)``, or MoCo v2's MLP ``Linear(in, hidden) -> ReLU -> Linear(hidden, out)``.

    By default both linears carry a bias and there is no BatchNorm (MoCo v2, PCL v2, HCSC).
    ``batch_norm=True`` puts a BatchNorm after the hidden linear (SimCLR / MoCo v3 style),
    which makes small-data runs learn faster. ``hidden_dim=None`` gives the single linear
    layer of MoCo v1 / PCL v1 / NPID.
    """
    if hidden_dim is None:
        return nn.Linear(in_dim, out_dim)
    return nn.Sequential(*_hidden_layers(in_dim, hidden_dim, batch_norm),
                         nn.Linear(hidden_dim, out_dim))  # fmt: skip


def _hidden_layers(in_dim: int, hidden_dim: int, batch_norm: bool) -> list[nn.Module]:
    """``Linear -> ReLU``, or ``Linear (no bias) -> BatchNorm1d -> ReLU``."""
    if batch_norm:
        return [nn.Linear(in_dim, hidden_dim, bias=False), nn.BatchNorm1d(hidden_dim),
                nn.ReLU(inplace=True)]  # fmt: skip
    return [nn.Linear(in_dim, hidden_dim), nn.ReLU(inplace=True)]


def mlp_head(in_dim: int, hidden_dim: int, out_dim: int, layers: int = 2, last_bn: bool = False,
             last_bn_affine: bool = True, last_bias: bool = True) -> nn.Sequential:  # fmt: skip
    """``layers`` linears with ``BatchNorm1d -> ReLU`` after every hidden one.

    Hidden linears carry no bias (a BatchNorm follows). ``last_bn`` adds a BatchNorm after
    the output linear (``last_bn_affine=False``: without scale and shift). The heads of
    the non-contrastive and classification methods:

    * SimSiam projector ``mlp_head(d, d, 2048, layers=3, last_bn=True,
      last_bn_affine=False)`` and predictor ``mlp_head(2048, 512, 2048)``;
    * BYOL projector and predictor ``mlp_head(d, 4096, 256)``;
    * ConIC (SimCLR's head) ``mlp_head(d, 2048, 128, last_bn=True, last_bias=False)``.

    Input ``B x in_dim``, output ``B x out_dim``.
    """
    if layers < 2:
        raise BadInput(f"an MLP head needs at least 2 layers, got {layers}")
    modules: list[nn.Module] = []
    width = in_dim
    for _ in range(layers - 1):
        modules += _hidden_layers(width, hidden_dim, batch_norm=True)
        width = hidden_dim
    modules.append(nn.Linear(width, out_dim, bias=last_bias))
    if last_bn:
        modules.append(nn.BatchNorm1d(out_dim, affine=last_bn_affine))
    return nn.Sequential(*modules)


class NormLinear(nn.Module):
    """Cosine-similarity layer (CLD, Wang et al. 2021): ``y_t = ⟨h/‖h‖, w_t/‖w_t‖⟩``.

    Weight ``out x in`` (``nn.Linear``'s layout; row t is output t's direction), no bias,
    so ``y = normalize(h) @ normalize(W).T`` and every output lies in [−1, 1]. It is
    unchanged when ``h`` is scaled by a positive number or a weight row is rescaled.
    Initialisation as CLD's code: ``W ~ U(−1, 1)``, then every row scaled to unit norm
    (the code stores ``in x out`` and renormalises columns; the same thing transposed).

    Input ``B x in``, output ``B x out``.
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """``U(−1, 1)`` entries, rows rescaled to unit L2 norm."""
        self.weight.uniform_(-1.0, 1.0)
        self.weight.div_(self.weight.norm(dim=1, keepdim=True).clamp_min(1e-12))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(F.normalize(x, dim=1), F.normalize(self.weight, dim=1))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


class NormMLP(nn.Sequential):
    """``Linear(in, hidden) -> ReLU -> NormLinear(hidden, out)`` (CLD's "NormMLP" head).

    The hidden layer is a plain ``Linear`` with bias and no BatchNorm, as in CLD's
    ImageNet MoCo v2 + CLD model; ``batch_norm=True`` adds a BatchNorm after it (as
    ``projection_head`` does for the plain MLP). Input ``B x in``, output ``B x out`` in
    [−1, 1].
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int,
                 batch_norm: bool = False) -> None:  # fmt: skip
        super().__init__(*_hidden_layers(in_dim, hidden_dim, batch_norm),
                         NormLinear(hidden_dim, out_dim))  # fmt: skip


def build_head(kind: str, in_dim: int, out_dim: int, hidden_dim: int | None = None,
               batch_norm: bool = False) -> nn.Module:  # fmt: skip
    """The projection head named by a method's ``head`` hyper-parameter.

    ``linear`` (NPID, MoCo v1), ``mlp`` (MoCo v2), ``norm_linear`` or ``norm_mlp`` (CLD).
    ``hidden_dim`` (MLP kinds) defaults to ``in_dim``, the backbone width, as in MoCo v2;
    ``batch_norm`` adds a BatchNorm after the hidden linear of the MLP kinds.
    """
    hidden = in_dim if hidden_dim is None else hidden_dim
    if kind == "linear":
        return projection_head(in_dim, out_dim)
    if kind == "mlp":
        return projection_head(in_dim, out_dim, hidden, batch_norm)
    if kind == "norm_linear":
        return NormLinear(in_dim, out_dim)
    if kind == "norm_mlp":
        return NormMLP(in_dim, hidden, out_dim, batch_norm)
    raise BadInput(f"unknown head '{kind}': use one of {', '.join(HEAD_KINDS)}")


class EncoderWithHead(nn.Module):
    """``backbone`` followed by ``head``: image batch -> un-normalised embedding."""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images))
