"""detectron2 configs: the shipped values, overrides, dataset folders."""

from __future__ import annotations

import importlib.util

import pytest
import yaml

from sslkit.detection.configs import (
    SHIPPED,
    build_config,
    config_path,
    get_key,
    load_config,
    parse_value,
    write_config,
)
from sslkit.detection.datasets import resolve_datasets
from sslkit.errors import BadInput
from tests.transfer_data import write_voc2007

VOC_SIZES = list(range(480, 801, 32))
COMMON = {
    "MODEL.META_ARCHITECTURE": "GeneralizedRCNN",
    "MODEL.BACKBONE.NAME": "build_resnet_backbone",
    "MODEL.BACKBONE.FREEZE_AT": 0,
    "MODEL.RESNETS.DEPTH": 50,
    "MODEL.RESNETS.NORM": "naiveSyncBN",
    "MODEL.RESNETS.STRIDE_IN_1X1": False,
    "MODEL.ROI_HEADS.NAME": "Res5ROIHeadsExtraNorm",
    "MODEL.RPN.PRE_NMS_TOPK_TEST": 6000,
    "MODEL.RPN.POST_NMS_TOPK_TEST": 1000,
    "MODEL.PIXEL_MEAN": [123.675, 116.28, 103.53],
    "MODEL.PIXEL_STD": [58.395, 57.12, 57.375],
    "INPUT.FORMAT": "RGB",
    "INPUT.MIN_SIZE_TEST": 800,
    "TEST.PRECISE_BN.ENABLED": True,
    "SOLVER.IMS_PER_BATCH": 16,
    "SOLVER.BASE_LR": 0.02,
}
EXPECTED = {
    "voc0712-24k": {"DATASETS.TRAIN": ["voc_2007_trainval", "voc_2012_trainval"],
                    "DATASETS.TEST": ["voc_2007_test"], "MODEL.MASK_ON": False,
                    "MODEL.ROI_HEADS.NUM_CLASSES": 20, "INPUT.MIN_SIZE_TRAIN": VOC_SIZES,
                    "SOLVER.MAX_ITER": 24000, "SOLVER.STEPS": [18000, 22000],
                    "SOLVER.WARMUP_ITERS": 100},
    "voc07-9k": {"DATASETS.TRAIN": ["voc_2007_trainval"], "DATASETS.TEST": ["voc_2007_test"],
                 "MODEL.ROI_HEADS.NUM_CLASSES": 20, "INPUT.MIN_SIZE_TRAIN": VOC_SIZES,
                 "SOLVER.MAX_ITER": 9000, "SOLVER.STEPS": [6000, 8000],
                 "SOLVER.WARMUP_ITERS": 100},
    "coco-2x": {"DATASETS.TRAIN": ["coco_2017_train"], "DATASETS.TEST": ["coco_2017_val"],
                "MODEL.MASK_ON": True, "MODEL.ROI_HEADS.NUM_CLASSES": 80,
                "INPUT.MIN_SIZE_TRAIN": list(range(640, 801, 32)), "SOLVER.MAX_ITER": 180000,
                "SOLVER.STEPS": [120000, 160000], "SOLVER.WARMUP_ITERS": 1000},
    "coco-1x": {"MODEL.MASK_ON": True, "SOLVER.MAX_ITER": 90000,
                "SOLVER.STEPS": [60000, 80000]},
}  # fmt: skip


def _check(cfg: dict, expected: dict) -> None:
    for key, value in expected.items():
        assert get_key(cfg, key) == value, key


@pytest.mark.parametrize("name", list(EXPECTED))
def test_c4_configs_hold_the_spec_values(name):
    """Every R50-C4 config: the common BN values and its schedule / datasets / sizes."""
    cfg = load_config(config_path(name))
    _check(cfg, COMMON)
    _check(cfg, EXPECTED[name])
    assert "_BASE_" not in cfg


def test_frozen_fpn_variant():
    """PCL's frozen-backbone R50-FPN: everything through res5 frozen, batch 8, lr 0.05."""
    cfg = load_config(config_path("voc0712-fpn-frozen"))
    _check(cfg, {"MODEL.BACKBONE.NAME": "build_resnet_fpn_backbone",
                 "MODEL.BACKBONE.FREEZE_AT": 5, "MODEL.ROI_HEADS.NAME": "StandardROIHeads",
                 "MODEL.RESNETS.STRIDE_IN_1X1": False, "INPUT.FORMAT": "RGB",
                 "SOLVER.IMS_PER_BATCH": 8, "SOLVER.BASE_LR": 0.05,
                 "SOLVER.MAX_ITER": 31035, "SOLVER.STEPS": [24828],
                 "DATASETS.TRAIN": ["voc_2007_trainval", "voc_2012_trainval"]})  # fmt: skip


def _build(**kwargs):
    defaults = dict(weights="/w/backbone.pkl", output_dir="/w", depth=50, num_gpus=8, seed=3)
    return build_config(kwargs.pop("task", "voc"), kwargs.pop("config", "voc0712-24k"),
                        **{**defaults, **kwargs})  # fmt: skip


def test_run_values_and_multi_gpu_keeps_synchronised_bn():
    """Weights, output folder, seed and device are set; 8 GPUs keep naiveSyncBN, no note."""
    cfg, notes = _build()
    _check(cfg, {"MODEL.WEIGHTS": "/w/backbone.pkl", "OUTPUT_DIR": "/w", "SEED": 3,
                 "MODEL.DEVICE": "cuda", "MODEL.RESNETS.NORM": "naiveSyncBN"})  # fmt: skip
    assert notes == []
    cfg, _ = _build(norm="SyncBN")
    assert get_key(cfg, "MODEL.RESNETS.NORM") == "SyncBN"


@pytest.mark.parametrize(("num_gpus", "device", "where"), [(0, "cpu", "CPU"),
                                                           (1, "cuda", "one GPU")])
def test_one_process_uses_plain_bn_and_says_so(num_gpus, device, where):
    """SyncBN needs a process group: a single process gets BN and a note naming the key."""
    cfg, notes = _build(num_gpus=num_gpus, norm="SyncBN",
                        opts=(("MODEL.ROI_BOX_HEAD.NORM", "naiveSyncBN"),))  # fmt: skip
    assert get_key(cfg, "MODEL.RESNETS.NORM") == "BN"
    assert get_key(cfg, "MODEL.ROI_BOX_HEAD.NORM") == "BN"
    assert get_key(cfg, "MODEL.DEVICE") == device
    assert len(notes) == 1 and where in notes[0] and "MODEL.RESNETS.NORM" in notes[0]


def test_iters_scale_the_schedule_and_opts_win():
    """--iters keeps the lr steps' relative place and caps warm-up; --opts come last."""
    cfg, _ = _build(iters=2400)
    _check(cfg, {"SOLVER.MAX_ITER": 2400, "SOLVER.STEPS": [1800, 2200],
                 "SOLVER.WARMUP_ITERS": 100})  # fmt: skip
    cfg, _ = _build(task="coco", config="coco-2x", iters=3)
    _check(cfg, {"SOLVER.MAX_ITER": 3, "SOLVER.STEPS": [2], "SOLVER.WARMUP_ITERS": 3})
    cfg, _ = _build(iters=2400, opts=(("SOLVER.STEPS", "(1000,)"), ("SOLVER.BASE_LR", "0.01"),
                                      ("INPUT.MIN_SIZE_TRAIN", "(128, 160)"),
                                      ("TEST.PRECISE_BN.ENABLED", "False"),
                                      ("MODEL.ROI_HEADS.NAME", "StandardROIHeads")))  # fmt: skip
    _check(cfg, {"SOLVER.STEPS": [1000], "SOLVER.BASE_LR": 0.01,
                 "INPUT.MIN_SIZE_TRAIN": [128, 160], "TEST.PRECISE_BN.ENABLED": False,
                 "MODEL.ROI_HEADS.NAME": "StandardROIHeads"})  # fmt: skip


def test_values_parse_as_yacs_does():
    """Python literals become values, anything else stays a string."""
    assert parse_value("0.01") == 0.01 and parse_value("8") == 8
    assert parse_value("('voc_2007_train',)") == ["voc_2007_train"]
    assert parse_value("True") is True and parse_value("BN") == "BN"


def test_shallow_resnets_fit_the_fpn_variant_not_c4():
    """R18/34 have no bottleneck res5 for the C4 head; the FPN variant takes them."""
    with pytest.raises(BadInput, match="ResNet-18 cannot fill the R50-C4"):
        _build(depth=18)
    cfg, _ = _build(config="voc0712-fpn-frozen", depth=18)
    _check(cfg, {"MODEL.RESNETS.DEPTH": 18, "MODEL.RESNETS.RES2_OUT_CHANNELS": 64})


def test_bad_names_and_mismatched_tasks_are_one_line_errors(tmp_path):
    """Unknown configs, a coco config for --task voc, keys that are not keys, base loops."""
    with pytest.raises(BadInput, match="unknown detectron2 config 'voc-42'"):
        _build(config="voc-42")
    with pytest.raises(BadInput, match="trains on coco datasets, not voc"):
        _build(config="coco-1x")
    with pytest.raises(BadInput, match="not a config key"):
        _build(opts=(("SOLVER..LR", "1"),))
    (tmp_path / "loop.yaml").write_text("_BASE_: loop.yaml\n")
    with pytest.raises(BadInput, match="its own _BASE_"):
        load_config(tmp_path / "loop.yaml")


def test_own_config_with_a_base_and_the_written_file(tmp_path):
    """A user YAML may build on a shipped one; the written file is the merged config."""
    (tmp_path / "mine.yaml").write_text(f"_BASE_: {config_path('voc07-9k')}\n"
                                        "SOLVER:\n  BASE_LR: 0.01\n")  # fmt: skip
    cfg, notes = _build(config=str(tmp_path / "mine.yaml"), num_gpus=0)
    _check(cfg, {**{k: v for k, v in COMMON.items() if k != "MODEL.RESNETS.NORM"},
                 "SOLVER.BASE_LR": 0.01, "SOLVER.MAX_ITER": 9000})  # fmt: skip
    path = write_config(cfg, tmp_path / "config.yaml", ["made by a test", *notes])
    text = path.read_text()
    assert text.startswith("# made by a test\n# one process on the CPU")
    assert yaml.safe_load(text) == cfg


def test_dataset_folders_in_both_layouts(tmp_path):
    """VOCdevkit/VOC2007 or VOC2007 directly; missing splits are bad input unless dry."""
    root = write_voc2007(tmp_path / "voc")
    found = resolve_datasets(["voc_2007_trainval", "voc_2007_test", "my_set"], root, check=True)
    assert set(found) == {"voc_2007_trainval", "voc_2007_test"}
    assert found["voc_2007_test"]["dirname"] == str(root / "VOCdevkit" / "VOC2007")
    assert (found["voc_2007_test"]["split"], found["voc_2007_test"]["year"]) == ("test", 2007)
    direct = resolve_datasets(["voc_2007_test"], root / "VOCdevkit", check=True)
    assert direct["voc_2007_test"]["dirname"] == found["voc_2007_test"]["dirname"]
    with pytest.raises(BadInput, match="voc_2012_trainval needs VOC2012/ImageSets/Main"):
        resolve_datasets(["voc_2012_trainval"], root, check=True)
    dry = resolve_datasets(["voc_2012_trainval", "coco_2017_val"], tmp_path / "far", check=False)
    assert dry["voc_2012_trainval"]["dirname"] == str((tmp_path / "far" / "VOC2012").resolve())
    assert dry["coco_2017_val"]["json_file"].endswith("coco/annotations/instances_val2017.json")
    assert not dry["coco_2017_val"]["found"]


@pytest.mark.detectron2
@pytest.mark.skipif(importlib.util.find_spec("detectron2") is None,
                    reason="detectron2 is not installed (no registry has it: .ci/run installs the "
                           "shared wheel, or build it as docs/detection.md says)")
@pytest.mark.parametrize("name", list(SHIPPED))
def test_detectron2_accepts_every_written_config(name, tmp_path):
    """detectron2's own config loader takes each written config (no unknown keys or types)."""
    from sslkit.detection.trainer import load_cfg

    cfg, _ = _build(config=name, task=SHIPPED[name][1], num_gpus=0)
    path = write_config(cfg, tmp_path / "config.yaml", [])
    loaded = load_cfg(str(path))
    assert loaded.MODEL.ROI_HEADS.NUM_CLASSES == get_key(cfg, "MODEL.ROI_HEADS.NUM_CLASSES")
    assert list(loaded.SOLVER.STEPS) == get_key(cfg, "SOLVER.STEPS")
    assert loaded.MODEL.RESNETS.NORM in ("BN", "FrozenBN")
