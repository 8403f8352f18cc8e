"""Split BatchNorm: batch statistics over ``splits`` chunks, imitating several GPUs on one.

The MoCo CIFAR demo uses it because on one device shuffle-BN is a no-op. Parameter and
buffer names are those of ``nn.BatchNorm2d``, so checkpoints stay torchvision-compatible.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SplitBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training-mode statistics are computed per chunk of the batch.

    Chunk ``s`` holds samples ``s, s+splits, s+2·splits, ...``; running statistics are the
    mean of the chunks' running statistics. Eval mode is plain BatchNorm2d.
    """

    def __init__(self, num_features: int, splits: int, **kwargs) -> None:
        super().__init__(num_features, **kwargs)
        self.splits = splits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.splits == 1:
            return super().forward(x)
        n, c, h, w = x.shape
        if n % self.splits:
            raise ValueError(f"batch {n} is not divisible by bn_splits={self.splits}")
        mean = self.running_mean.repeat(self.splits)
        var = self.running_var.repeat(self.splits)
        out = F.batch_norm(
            x.reshape(-1, c * self.splits, h, w), mean, var,
            self.weight.repeat(self.splits), self.bias.repeat(self.splits),
            True, self.momentum if self.momentum is not None else 0.1, self.eps,
        ).view(n, c, h, w)  # fmt: skip
        with torch.no_grad():
            self.running_mean.copy_(mean.view(self.splits, c).mean(dim=0))
            self.running_var.copy_(var.view(self.splits, c).mean(dim=0))
            if self.num_batches_tracked is not None:  # as nn.BatchNorm2d counts
                self.num_batches_tracked.add_(1)
        return out


def convert_to_split_bn(module: nn.Module, splits: int) -> nn.Module:
    """Replace every ``BatchNorm2d`` in ``module`` (in place) by a :class:`SplitBatchNorm2d`."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d) and not isinstance(child, SplitBatchNorm2d):
            split = SplitBatchNorm2d(child.num_features, splits, eps=child.eps,
                                     momentum=child.momentum)  # fmt: skip
            split.load_state_dict(child.state_dict())
            setattr(module, name, split)
        else:
            convert_to_split_bn(child, splits)
    return module
