"""The launcher's pieces that need no detectron2: metrics, mean/std, the missing-package line."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

from sslkit.detection.launch import aggregate, launch_command, main, metrics, require_detectron2
from sslkit.errors import BadInput


def test_metrics_keep_ap_ap50_ap75_per_kind():
    """VOC's bbox dict and COCO's bbox + segm dicts; numpy floats become floats, NaN None."""
    voc = metrics({"bbox": {"AP": np.float64(51.2), "AP50": 80.0, "AP75": np.float32(55.5)}})
    assert voc == {"bbox": {"AP": 51.2, "AP50": 80.0, "AP75": pytest.approx(55.5)}}
    assert type(voc["bbox"]["AP"]) is float
    coco = metrics({"bbox": {"AP": 40.0, "AP50": 60.0, "AP75": 43.0, "APs": 20.0,
                             "AP-person": 50.0},
                    "segm": {"AP": 35.0, "AP50": 57.0, "AP75": math.nan}})  # fmt: skip
    assert coco["bbox"] == {"AP": 40.0, "AP50": 60.0, "AP75": 43.0}
    assert coco["segm"]["AP75"] is None
    assert metrics({}) == {}


def test_seeds_give_mean_and_population_std():
    """Mean and std over runs, per kind and metric (None when a run has no value)."""
    runs = [{"metrics": {"bbox": {"AP": a, "AP50": b, "AP75": None}}}
            for a, b in ((50.0, 80.0), (52.0, 81.0))]  # fmt: skip
    out = aggregate(runs)
    assert out["mean"]["bbox"] == {"AP": 51.0, "AP50": 80.5, "AP75": None}
    assert out["std"]["bbox"] == {"AP": 1.0, "AP50": 0.5, "AP75": None}


def test_missing_detectron2_is_bad_input_with_the_install_line(monkeypatch, capsys):
    """A hidden detectron2: one line naming the source install (library and launcher)."""
    monkeypatch.setitem(sys.modules, "detectron2", None)
    with pytest.raises(BadInput) as raised:
        require_detectron2()
    message = str(raised.value)
    assert "\n" not in message
    assert "pip install --no-build-isolation 'git+https://github.com/facebookresearch/" \
        "detectron2.git'" in message  # fmt: skip
    assert main(["--config-file", "c.yaml", "--task", "voc", "--data-root", "."]) == 2
    assert capsys.readouterr().err.startswith("error: detectron2 is not importable")


@pytest.mark.parametrize("root_flag,runs_flag", [("--data-root", "--runs"),
                                                 ("--datasets-root", "--seeds")])  # fmt: skip
def test_the_launcher_takes_the_public_names_and_those_of_old_command_files(
        monkeypatch, capsys, root_flag, runs_flag):  # fmt: skip
    """``--data-root``/``--runs`` as ``sslkit detect`` names them; the 0.1.0 spellings of a
    command.sh written then still parse (an unknown flag would exit from argparse instead)."""
    monkeypatch.setitem(sys.modules, "detectron2", None)
    argv = ["--config-file", "c.yaml", "--task", "voc", root_flag, ".", runs_flag, "2"]
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith("error: detectron2 is not importable")


def test_the_command_names_config_datasets_gpus_and_seeds(tmp_path):
    """The dry run's command: the launcher module with everything it needs, shell-quoted."""
    command = launch_command(tmp_path / "my config.yaml", "voc", tmp_path, 8, [3, 4, 5],
                             tmp_path / "detect.json", python="python")  # fmt: skip
    assert command.startswith("python -m sslkit.detection.launch --config-file '")
    assert "--num-gpus 8 --seed 3 --runs 3" in command
    assert f"--data-root {tmp_path}" in command
