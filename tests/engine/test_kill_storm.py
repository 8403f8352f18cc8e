"""The kill storm: ``pretrain`` SIGKILLed at 10 seeded random instants, resumed after each.

Each victim is a real process (``tests/engine/kill_runner.py``) that kills itself inside
a training step, inside a checkpoint write (the temporary file half-written), inside the
k-means of HCSC's E-step, or a random number of seconds into its training (a seeded
fraction of the time its next steps take, timed on the uninterrupted run, so that a fast
machine cannot finish before the instant comes). After every kill the run
is relaunched with ``--resume``; after the 10th it runs to the end. The final weights,
optimiser state, MoCo queue / HCSC clustering, step and RNG equal an uninterrupted run's
exactly, ``metrics.jsonl`` holds every step once, and each kill cost at most the steps
since the last checkpoint (``train.checkpoint_every_steps=5``): the steps repeated are
counted and reported.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sslkit.utils.atomic import TMP_MARKER
from tests.engine.test_mid_epoch_resume import assert_same_state

ROOT = Path(__file__).resolve().parents[2]
EVERY_STEPS = 5
COMMON = ["--data", "digits@512", "--batch-size", "32", "--epochs", "4", "--no-progress",
          "--seed", "11", "--set", "train.log_every=1", "--set", "train.plot_curves=false",
          "--set", f"train.checkpoint_every_steps={EVERY_STEPS}",
          "--set", "train.checkpoint_every_minutes=0"]  # fmt: skip
METHODS = {
    "moco": ["--set", "method.queue_size=256"],
    "hcsc": ["--set", "method.queue_size=256", "--set", "method.num_clusters=[16,8]",
             "--set", "method.warmup_epochs=1", "--set", "method.kmeans_nredo=1",
             "--set", "method.kmeans_niter=10"],
}  # fmt: skip
STEPS = 4 * 512 // 32


def kill_plan(method: str, seed: int = 20) -> list[str]:
    """10 seeded kills; HCSC's first five include two inside the clustering (early, while
    epochs with an E-step are still ahead)."""
    rng = random.Random(f"{seed}-{method}")
    first = ["cluster:1", "cluster:1"] if method == "hcsc" else ["step", "time"]
    first += ["write", "step", "time"]
    last = ["write", "step", "step", "step", "time"]
    rng.shuffle(first)
    rng.shuffle(last)
    plan = []
    for kind in first + last:
        if kind == "step":
            plan.append(f"step:{rng.randint(1, 9)}")
        elif kind == "write":
            plan.append(f"write:{rng.randint(1, 2)}")
        elif kind == "time":  # a fraction of the next steps' time, see _victim_plan
            plan.append(f"time:{rng.uniform(0.1, 0.9):.2f}")
        else:
            plan.append(kind)
    return plan


def _command(method: str, workdir: Path, *extra: str) -> list[str]:
    return ["pretrain", "--method", method, "--workdir", str(workdir), *COMMON,
            *METHODS[method], *extra]  # fmt: skip


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def _records(workdir: Path) -> list[dict]:
    path = workdir / "metrics.jsonl"
    records = []
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:  # the line the kill cut
            continue
    return records


def _logged_steps(workdir: Path) -> list[int]:
    return [record["step"] for record in _records(workdir) if record["kind"] == "step"]


def _steps_of_last_start(workdir: Path) -> tuple[int, list[int]]:
    """How many runs started (``start`` records), and the steps the last one logged."""
    records = _records(workdir)
    starts = [i for i, record in enumerate(records) if record["kind"] == "start"]
    if not starts:
        return 0, []
    return len(starts), [r["step"] for r in records[starts[-1]:] if r["kind"] == "step"]


def _seconds_per_step(workdir: Path) -> float:
    """Mean wall time of a step in a finished run (E-steps and checkpoint writes included)."""
    times = [r["time"] for r in _records(workdir) if r["kind"] == "step"]
    return (times[-1] - times[0]) / (len(times) - 1)


def _victim_plan(plan: str, checkpoint_step: int, seconds_per_step: float) -> str:
    """The seeded plan fitted to the steps left after ``checkpoint_step``, so that every
    kill lands before the run could end: ``step:N`` at most the steps left, ``write:2``
    only when ten steps are left, and ``time:F`` (F a fraction) F times the seconds that
    the next (at most 9) steps take."""
    kind, _, value = plan.partition(":")
    left = STEPS - checkpoint_step
    if kind == "step":
        return f"step:{min(int(value), left)}"
    if kind == "write":
        return f"write:{min(int(value), 1 + left // (2 * EVERY_STEPS))}"
    if kind == "time":
        return f"time:{float(value) * min(left, 9) * seconds_per_step:.2f}"
    return plan


def _checkpoint_step(workdir: Path) -> int:
    path = workdir / "checkpoint.pt"
    return torch.load(path, weights_only=True)["step"] if path.is_file() else 0


@pytest.mark.slow
@pytest.mark.parametrize("method", list(METHODS))
def test_kill_storm_ends_equal_to_an_uninterrupted_run(tmp_path, method):
    straight, stormed = tmp_path / "straight", tmp_path / "stormed"
    done = subprocess.run([sys.executable, "-m", "sslkit", *_command(method, straight)],
                          capture_output=True, text=True, env=_env(), timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]

    seconds_per_step = _seconds_per_step(straight)
    repeated, report = [], []
    for fraction_plan in kill_plan(method):
        before = _checkpoint_step(stormed)
        plan = _victim_plan(fraction_plan, before, seconds_per_step)
        runs_before, _ = _steps_of_last_start(stormed)
        victim = subprocess.run([sys.executable, "-m", "tests.engine.kill_runner", plan, "--",
                                 *_command(method, stormed, "--resume")], cwd=ROOT,
                                capture_output=True, text=True, env=_env(),
                                timeout=900)  # fmt: skip
        assert victim.returncode == -signal.SIGKILL, \
            f"{plan} did not kill the run (exit {victim.returncode}): {victim.stderr[-2000:]}"
        checkpoint = _checkpoint_step(stormed)
        assert checkpoint >= before, "a kill never takes a checkpoint back"
        runs, steps = _steps_of_last_start(stormed)
        # the steps this victim finished after the checkpoint it left (0 if it died before
        # it started training)
        lost = max([0, *steps]) - checkpoint if runs > runs_before and steps else 0
        assert lost <= EVERY_STEPS, f"{plan}: {lost} steps lost, more than the cadence"
        repeated.append(lost)
        report.append(f"{plan}: checkpoint at step {checkpoint}, {lost} steps to redo")

    final = subprocess.run([sys.executable, "-m", "sslkit",
                            *_command(method, stormed, "--resume")], capture_output=True,
                           text=True, env=_env(), timeout=900)  # fmt: skip
    assert final.returncode == 0, final.stderr[-3000:]
    assert "resuming " in final.stderr

    expected = torch.load(straight / "checkpoint.pt", weights_only=True)
    resumed = torch.load(stormed / "checkpoint.pt", weights_only=True)
    for key in ("epoch", "step", "encoder", "method_state", "optimizer", "rng"):
        assert_same_state(resumed[key], expected[key], key)
    assert _logged_steps(stormed) == list(range(1, STEPS + 1)), "every step logged once"
    assert not [p.name for p in stormed.iterdir() if p.name.startswith(TMP_MARKER)]
    summary = (f"kill storm {method}: 10 SIGKILLs, {sum(repeated)} steps repeated of "
               f"{STEPS} ({', '.join(map(str, repeated))})")  # fmt: skip
    print("\n" + summary + "\n  " + "\n  ".join(report))
