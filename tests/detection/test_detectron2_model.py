"""The exported weights in a real detectron2 R50-C4 model (needs detectron2)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
import torchvision

pytestmark = [
    pytest.mark.detectron2,
    pytest.mark.skipif(importlib.util.find_spec("detectron2") is None,
                       reason="detectron2 is not installed (no registry has it: .ci/run "
                              "installs the shared wheel, or build it as docs/detection.md says)"),
]  # fmt: skip


def test_exported_weights_fill_the_whole_r50_c4_backbone_and_res5(one_thread, tmp_path):
    """Every backbone and res5 tensor of the model comes from backbone.pkl, none is left out.

    res5 of a C4 model lives under ``roi_heads.res5``; ``matching_heuristics`` maps it. The
    only res5 tensors not in the file are the extra norm of Res5ROIHeadsExtraNorm.
    """
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.modeling import build_model

    from sslkit.detection.configs import build_config, write_config
    from sslkit.detection.convert import export_backbone
    from sslkit.detection.trainer import load_cfg

    torch.manual_seed(0)
    state = {k: v for k, v in torchvision.models.resnet50().state_dict().items()
             if not k.startswith("fc.")}  # fmt: skip
    for key, value in state.items():  # make BN values differ from a fresh model's
        if key.endswith(("bias", "running_mean")):
            state[key] = torch.randn_like(value)
    torch.save(state, tmp_path / "r50.pt")
    export_backbone(tmp_path / "r50.pt", tmp_path / "backbone.pkl")
    cfg, _ = build_config("voc", "voc0712-24k", weights=tmp_path / "backbone.pkl",
                          output_dir=tmp_path, depth=50, num_gpus=0, seed=0)  # fmt: skip
    d2cfg = load_cfg(str(write_config(cfg, tmp_path / "config.yaml", [])))
    model = build_model(d2cfg)
    assert isinstance(model.roi_heads.res5.norm, torch.nn.BatchNorm2d)
    DetectionCheckpointer(model).load(d2cfg.MODEL.WEIGHTS)

    import pickle

    with open(tmp_path / "backbone.pkl", "rb") as handle:
        exported = pickle.load(handle)["model"]
    loaded = {k: v for k, v in model.state_dict().items()
              if k.startswith("backbone.") or k.startswith("roi_heads.res5.")}  # fmt: skip
    unfilled = [k for k in loaded if k.split(".", 1)[1] not in exported]
    assert unfilled == ["roi_heads.res5.norm." + s for s in
                        ("weight", "bias", "running_mean", "running_var",
                         "num_batches_tracked")]  # fmt: skip
    unused = set(exported) - {k.split(".", 1)[1] for k in loaded}
    assert unused == set()
    for key, value in loaded.items():
        if key.split(".", 1)[1] in exported:
            np.testing.assert_array_equal(value.numpy(), exported[key.split(".", 1)[1]],
                                          err_msg=key)  # fmt: skip
