"""``Res5ROIHeadsExtraNorm``: the C4 ROI head of MoCo's/HCSC's detection configs (detectron2).

MoCo's ``train_net.py`` registers it: the res5 stage of the ROI head followed by one more
normalisation layer of the backbone's type (``MODEL.RESNETS.NORM``). sslkit registers the
same head, so the shipped configs need no file from those repositories.
"""

from __future__ import annotations

from detectron2.layers import get_norm
from detectron2.modeling import ROI_HEADS_REGISTRY
from detectron2.modeling.roi_heads import Res5ROIHeads


class Res5ROIHeadsExtraNorm(Res5ROIHeads):
    """Res5 ROI head with an extra norm layer after res5 (MoCo, He et al. 2020, §4.2)."""

    @classmethod
    def _build_res5_block(cls, cfg):
        seq, out_channels = super()._build_res5_block(cfg)
        seq.add_module("norm", get_norm(cfg.MODEL.RESNETS.NORM, out_channels))
        return seq, out_channels


def register_extra_norm_head() -> None:
    """Register the head in detectron2's ROI-head registry (once per process)."""
    if "Res5ROIHeadsExtraNorm" not in ROI_HEADS_REGISTRY:
        ROI_HEADS_REGISTRY.register(Res5ROIHeadsExtraNorm)
