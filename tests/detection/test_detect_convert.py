"""Export to detectron2 weights: MoCo's renaming, the whole backbone and nothing else."""

from __future__ import annotations

import pickle
import re

import numpy as np
import pytest
import torch
import torchvision

from sslkit.detection.convert import (
    check_backbone,
    convert_state,
    detectron2_name,
    expected_keys,
    export_backbone,
)
from sslkit.errors import BadInput

#: Every name detectron2's ResNet (stem + res2..res5 blocks) uses for params and buffers.
D2_NAME = re.compile(r"^(stem\.conv1|res[2-5]\.\d+\.(conv[1-3]|shortcut))(\.norm)?\."
                     r"(weight|bias|running_mean|running_var|num_batches_tracked)$")  # fmt: skip


@pytest.fixture(scope="module")
def resnet50_state() -> dict[str, torch.Tensor]:
    """A torchvision ResNet-50's state dict without fc, BN statistics made non-trivial."""
    torch.manual_seed(0)
    state = {k: v for k, v in torchvision.models.resnet50().state_dict().items()
             if not k.startswith("fc.")}  # fmt: skip
    for key, value in state.items():
        if key.endswith(("running_mean", "bias")):
            state[key] = torch.randn_like(value)
        elif key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(7)
    return state


def test_moco_renaming_examples():
    """MoCo's conversion examples, one per rule."""
    assert detectron2_name("conv1.weight") == "stem.conv1.weight"
    assert detectron2_name("bn1.weight") == "stem.conv1.norm.weight"
    assert detectron2_name("layer1.0.bn2.running_var") == "res2.0.conv2.norm.running_var"
    assert detectron2_name("layer4.2.conv3.weight") == "res5.2.conv3.weight"
    assert detectron2_name("layer2.0.downsample.0.weight") == "res3.0.shortcut.weight"
    assert detectron2_name("layer3.0.downsample.1.bias") == "res4.0.shortcut.norm.bias"
    assert detectron2_name("layer2.3.bn3.num_batches_tracked") == \
        "res3.3.conv3.norm.num_batches_tracked"  # fmt: skip


@pytest.mark.parametrize("arch", ["resnet18", "resnet34", "resnet50"])
def test_every_parameter_and_buffer_maps_to_a_detectron2_name(arch):
    """All 318 (R50) / 120 (R18) keys, buffers included, get distinct detectron2 names."""
    keys = list(expected_keys(arch))
    reference = getattr(torchvision.models, arch)().state_dict()
    assert set(keys) == {k for k in reference if not k.startswith("fc.")}
    names = [detectron2_name(k) for k in keys]
    assert len(set(names)) == len(keys) == {"resnet18": 120, "resnet34": 216,
                                            "resnet50": 318}[arch]  # fmt: skip
    assert [n for n in names if not D2_NAME.match(n)] == []
    assert sum(n.endswith("num_batches_tracked") for n in names) == \
        sum(k.endswith("num_batches_tracked") for k in keys) > 0  # fmt: skip


def test_tensors_are_unchanged(resnet50_state):
    """Every value is the same array (values, shape, dtype), int64 counters included."""
    converted = convert_state(resnet50_state)
    assert len(converted) == len(resnet50_state)
    for key, value in resnet50_state.items():
        array = converted[detectron2_name(key)]
        assert isinstance(array, np.ndarray)
        assert array.dtype == value.numpy().dtype and array.shape == tuple(value.shape)
        np.testing.assert_array_equal(array, value.numpy())
    assert converted["res2.0.conv1.norm.num_batches_tracked"] == 7


def test_bfloat16_becomes_float32():
    """numpy has no bfloat16: such tensors are exported as float32 with the same values."""
    value = torch.randn(4).to(torch.bfloat16)
    array = convert_state({"conv1.weight": value})["stem.conv1.weight"]
    assert array.dtype == np.float32
    np.testing.assert_array_equal(array, value.float().numpy())


def test_export_writes_what_detectron2_reads(resnet50_state, tmp_path):
    """A torchvision state dict -> a pickle plain ``pickle`` loads: model, author, heuristics."""
    torch.save({**resnet50_state, "fc.weight": torch.zeros(1000, 2048),
                "fc.bias": torch.zeros(1000)}, tmp_path / "tv.pt")  # fmt: skip
    info = export_backbone(tmp_path / "tv.pt", tmp_path / "backbone.pkl")
    with open(tmp_path / "backbone.pkl", "rb") as handle:
        data = pickle.load(handle)
    assert set(data) == {"model", "__author__", "matching_heuristics"}
    assert data["__author__"] == "sslkit" and data["__author__"] != "Caffe2"
    assert data["matching_heuristics"] is True
    assert set(data["model"]) == {detectron2_name(k) for k in resnet50_state}
    assert all(isinstance(v, np.ndarray) for v in data["model"].values())
    assert (info.arch, info.depth, info.num_tensors, info.source_format) == \
        ("resnet50", 50, 318, "torchvision")  # fmt: skip
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".sslkit-tmp")] == []


def test_moco_release_exports_exactly_the_query_backbone(resnet50_state, tmp_path):
    """encoder_k, the queue and the MLP head stay out (HCSC's `pass` bug is not copied)."""
    release = {f"module.encoder_q.{k}": v for k, v in resnet50_state.items()}
    release.update({f"module.encoder_k.{k}": v + 1 for k, v in resnet50_state.items()})
    for prefix in ("module.encoder_q.", "module.encoder_k."):
        release.update({f"{prefix}fc.0.weight": torch.randn(2048, 2048),
                        f"{prefix}fc.0.bias": torch.randn(2048),
                        f"{prefix}fc.2.weight": torch.randn(128, 2048),
                        f"{prefix}fc.2.bias": torch.randn(128)})  # fmt: skip
    release.update({"module.queue": torch.randn(128, 64),
                    "module.queue_ptr": torch.zeros(1, dtype=torch.long)})  # fmt: skip
    torch.save({"epoch": 200, "arch": "resnet50", "state_dict": release,
                "optimizer": {}}, tmp_path / "moco.pth.tar")  # fmt: skip
    info = export_backbone(tmp_path / "moco.pth.tar", tmp_path / "backbone.pkl")
    with open(tmp_path / "backbone.pkl", "rb") as handle:
        model = pickle.load(handle)["model"]
    assert set(model) == {detectron2_name(k) for k in resnet50_state}
    assert not [k for k in model if "encoder" in k or "queue" in k or "fc" in k]
    np.testing.assert_array_equal(model["res5.2.conv3.norm.bias"],
                                  resnet50_state["layer4.2.bn3.bias"].numpy())  # fmt: skip
    assert info.source_format == "release"


def test_small_stems_and_incomplete_encoders_are_refused(resnet50_state):
    """Only complete ImageNet-stem ResNets go: one-line reasons."""
    with pytest.raises(BadInput, match="ImageNet stem"):
        check_backbone({}, "resnet18-small")
    partial = dict(resnet50_state)
    partial.pop("layer3.1.bn2.running_var")
    with pytest.raises(BadInput, match="missing layer3.1.bn2.running_var"):
        check_backbone(partial, "resnet50")
    with pytest.raises(BadInput, match="not a complete resnet18"):
        check_backbone(resnet50_state, "resnet18")
    check_backbone(resnet50_state, "resnet50")
