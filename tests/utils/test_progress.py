"""Progress: a rich bar with the time remaining on a terminal, plain log lines without one."""

from __future__ import annotations

import io

import pytest

from sslkit.engine.logging import TrainingProgress
from sslkit.utils.progress import Progress, duration


def test_log_lines_say_what_is_done_the_values_and_the_time_left() -> None:
    stream = io.StringIO()
    with Progress("pretrain", 400, unit="steps", stream=stream, terminal=False,
                  interval=0) as shown:  # fmt: skip
        shown.update(120, epoch="3/10", loss=6.21, lr=0.03, images=2560)
    [line] = stream.getvalue().splitlines()  # nothing new at the end: no second line
    assert line.startswith("[sslkit] pretrain: epoch 3/10, loss 6.21, lr 0.03, ")
    assert "120/400 steps (30 %)" in line and "images/s" in line and line.endswith(" left")


def test_lines_are_written_every_interval_and_once_at_the_end() -> None:
    stream = io.StringIO()
    with Progress("extract", 10, stream=stream, terminal=False, interval=3600) as shown:
        for _ in range(10):
            shown.update(advance=1, images=1)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("[sslkit] extract: 10/10 images (100 %)")
    assert "done in" in lines[0]


def test_a_terminal_gets_a_bar_with_the_time_remaining() -> None:
    stream = io.StringIO()
    with Progress("extract", 10, stream=stream, terminal=True) as shown:
        shown.update(advance=5, loss=1.5)
    text = stream.getvalue()
    assert "extract" in text and "5/10" in text and "left" in text and "loss 1.5" in text
    assert "[sslkit]" not in text  # the bar, not the log lines


def test_disabled_progress_writes_nothing() -> None:
    stream = io.StringIO()
    with Progress("extract", 10, enabled=False, stream=stream, interval=0) as shown:
        shown.update(advance=10)
    assert stream.getvalue() == ""


def test_training_progress_shows_images_per_second(capsys, monkeypatch) -> None:
    monkeypatch.setenv("SSLKIT_PROGRESS_SECONDS", "0")
    with TrainingProgress(True, 40) as progress:
        progress.update(10, "1/4", {"loss": 6.2, "lr": 0.03, "img/s": 210.5})
    line = capsys.readouterr().err.splitlines()[0]
    assert line.startswith("[sslkit] pretrain: epoch 1/4, loss 6.2, lr 0.03, images/s 210.5, ")
    assert "10/40 steps (25 %)" in line


@pytest.mark.parametrize(("seconds", "text"), [(7.2, "7 s"), (250, "4 min 10 s"),
                                               (3725, "1 h 2 min")])  # fmt: skip
def test_durations_read_naturally(seconds: float, text: str) -> None:
    assert duration(seconds) == text
