"""Training curves from metrics.jsonl, the TensorBoard scalars, and a missing matplotlib."""

from __future__ import annotations

import json
import sys

import pytest
from PIL import Image

from sslkit.engine.logging import MetricsLog, require_tensorboard
from sslkit.engine.plots import TrainingCurves, curve_series, plot_curves
from sslkit.errors import BadInput

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _records() -> list[dict]:
    """Two epochs of four steps, three loss terms, a kNN monitor at each epoch end."""
    records = [{"kind": "start", "epoch": 0, "step": 0, "world_size": 1, "device": "cpu"}]
    for step in range(1, 9):
        records.append({"kind": "step", "epoch": 1 + (step - 1) // 4, "step": step,
                        "lr": 0.1 / step, "images_per_second": 100.0, "loss": 5.0 - step / 4,
                        "loss/instance": 3.0 - step / 8, "loss/proto": 2.0 - step / 8})  # fmt: skip
        if step % 4 == 0:
            records.append({"kind": "epoch", "epoch": step // 4, "step": step, "loss": 4.0,
                            "loss/instance": 2.5, "loss/proto": 1.5,
                            "knn/top1": 40.0 + step})  # fmt: skip
    return records


def _write_jsonl(path, records, torn_tail: bool = False) -> None:
    text = "".join(json.dumps(r) + "\n" for r in records)
    path.write_text(text + ('{"kind": "step", "ste' if torn_tail else ""))


def test_curve_series_panels_and_resume_duplicates():
    """Panels: loss first, its terms, lr, the kNN monitor; a re-logged step keeps the last."""
    records = _records()
    records.append({"kind": "step", "epoch": 2, "step": 8, "lr": 0.5, "loss": 9.0,
                    "loss/instance": 1.0, "loss/proto": 1.0})  # fmt: skip
    panels = curve_series(records)
    assert list(panels) == ["loss", "loss/instance", "loss/proto", "lr", "knn/top1"]
    assert panels["loss"]["step"] == list(range(1, 9))
    assert panels["loss"]["value"][-1] == 9.0 and panels["lr"]["value"][-1] == 0.5
    assert panels["loss"]["epoch_step"] == [4, 8] and panels["loss"]["epoch_mean"] == [4.0, 4.0]
    assert panels["knn/top1"]["step"] == [4, 8] and panels["knn/top1"]["value"] == [44.0, 48.0]


def test_curve_series_one_term_equal_to_the_total_is_one_panel():
    """MoCo's loss/instance is its loss: drawn once."""
    records = [{"kind": "step", "step": s, "lr": 0.1, "loss": 1.0 / s, "loss/instance": 1.0 / s}
               for s in (1, 2)]  # fmt: skip
    assert list(curve_series(records)) == ["loss", "lr"]


def test_plot_curves_writes_a_png(tmp_path):
    """A hand-written metrics.jsonl (with a torn last line) becomes a PNG."""
    _write_jsonl(tmp_path / "metrics.jsonl", _records(), torn_tail=True)
    out = plot_curves(tmp_path / "metrics.jsonl", tmp_path / "pics" / "curves.png")
    assert out == tmp_path / "pics" / "curves.png"
    assert out.read_bytes()[:8] == PNG_MAGIC
    with Image.open(out) as image:
        width, height = image.size
    assert 800 < width < 2000 and 400 < height < 1200  # 3 x 2 panels
    assert [p.name for p in (tmp_path / "pics").iterdir()] == ["curves.png"]  # no temp left


def test_plot_curves_bad_inputs(tmp_path):
    """A missing file, or one without steps, is bad input naming the fix."""
    with pytest.raises(BadInput, match="not found"):
        plot_curves(tmp_path / "nope.jsonl", tmp_path / "c.png")
    _write_jsonl(tmp_path / "metrics.jsonl", _records()[:1])
    with pytest.raises(BadInput, match="no logged steps"):
        plot_curves(tmp_path / "metrics.jsonl", tmp_path / "c.png")
    assert not (tmp_path / "c.png").exists()


def test_missing_matplotlib_is_one_clear_line(tmp_path, monkeypatch):
    """Without matplotlib: BadInput saying what to install; nothing written."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    _write_jsonl(tmp_path / "metrics.jsonl", _records())
    with pytest.raises(BadInput) as caught:
        plot_curves(tmp_path / "metrics.jsonl", tmp_path / "c.png")
    message = str(caught.value)
    assert "matplotlib" in message and "pip install 'sslkit[plots]'" in message
    assert "\n" not in message and not (tmp_path / "c.png").exists()


def test_training_curves_warn_once_and_never_fail(tmp_path, monkeypatch, capsys):
    """The trainer's hook turns a missing matplotlib into one warning line, then skips."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    _write_jsonl(tmp_path / "metrics.jsonl", _records())
    curves = TrainingCurves(tmp_path, enabled=True)
    curves.update()
    curves.update()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: ")
    assert "pip install 'sslkit[plots]'" in lines[0] and "train.plot_curves=false" in lines[0]
    assert not curves.enabled and not (tmp_path / "curves.png").exists()


def test_training_curves_redraw(tmp_path):
    """With matplotlib the hook (re)draws WORKDIR/curves.png; disabled, it does nothing."""
    pytest.importorskip("matplotlib", reason="the [plots] extra is not installed")
    TrainingCurves(tmp_path, enabled=True).update()  # no metrics yet: nothing to draw
    assert not (tmp_path / "curves.png").exists()
    _write_jsonl(tmp_path / "metrics.jsonl", _records())
    TrainingCurves(tmp_path, enabled=False).update()
    assert not (tmp_path / "curves.png").exists()
    TrainingCurves(tmp_path, enabled=True).update()
    assert (tmp_path / "curves.png").read_bytes()[:8] == PNG_MAGIC


def test_tensorboard_scalars(tmp_path):
    """Numeric keys of step records at their step; epoch means under epoch/; no start."""
    pytest.importorskip("tensorboard", reason="the [plots] extra (tensorboard) is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with MetricsLog(tmp_path / "metrics.jsonl", True, tmp_path / "tb") as log:
        for record in _records():
            log.write(record)
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == len(_records())
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"loss", "loss/instance", "loss/proto", "lr", "images_per_second"} <= tags
    assert {"epoch/loss", "epoch/knn/top1"} <= tags
    assert not tags & {"step", "epoch", "time", "world_size", "epoch/step"}
    assert [e.step for e in events.Scalars("loss")] == list(range(1, 9))
    assert [e.value for e in events.Scalars("epoch/knn/top1")] == [44.0, 48.0]


def test_tensorboard_off_or_other_ranks_write_nothing(tmp_path):
    """No tensorboard_dir (the default) or a non-zero rank: no writer, no folder."""
    with MetricsLog(tmp_path / "m.jsonl", False, tmp_path / "tb") as log:
        log.write({"kind": "step", "step": 1, "loss": 1.0})
    with MetricsLog(tmp_path / "m.jsonl", True) as log:
        assert log.tensorboard is None
    assert not (tmp_path / "tb").exists() and not (tmp_path / "m.jsonl").exists()


def test_missing_tensorboard_is_one_clear_line(monkeypatch):
    """Asking for TensorBoard without it installed: BadInput naming the extra."""
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(BadInput, match=r"pip install 'sslkit\[plots\]'"):
        require_tensorboard()
