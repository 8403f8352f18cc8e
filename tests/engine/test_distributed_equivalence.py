"""2 processes under torchrun take the same step as 1 process with the same global batch.

``distributed_step.py`` takes one MoCo or HCSC step on 32 digits, alone (split BatchNorm
over the two halves, standing in for two devices) or as 2 gloo processes of 16 each.
For MoCo with shuffle-BN off the loss, the weights, the momentum encoder and the queue
agree; the BatchNorm running statistics agree as the mean over ranks. HCSC's clustering
is computed once (rank 0) and every rank holds the same one, equal to the single
process's. With shuffle-BN on the step runs and only
what shuffle-BN touches (the keys, so the loss and the gradients) differs.
Also: ``sslkit extract`` under torchrun writes exactly N rows in dataset order.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

SCRIPT = Path(__file__).with_name("distributed_step.py")
BN_STATS = ("running_mean", "running_var")

pytestmark = pytest.mark.distributed


def _env() -> dict[str, str]:
    root = str(Path(__file__).parents[2])
    return {**os.environ, "OMP_NUM_THREADS": "1",
            "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}  # fmt: skip


def _step(tmp_path: Path, method: str, processes: int, *flags: str) -> list[dict]:
    out = tmp_path / f"{method}-{processes}{''.join(flags)}.pt"
    launcher = ([sys.executable] if processes == 1 else
                [sys.executable, "-m", "torch.distributed.run", "--standalone",
                 "--nproc-per-node", str(processes)])  # fmt: skip
    done = subprocess.run([*launcher, str(SCRIPT), method, str(out), *flags], env=_env(),
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return [torch.load(f"{out}.rank{r}", weights_only=True) for r in range(processes)]


def _queue_by_id(state: dict) -> torch.Tensor:
    """The queue's rows ordered by the dataset index they came from (-1 = initial noise)."""
    ids = state["queue.ids"]
    return state["queue.buffer"][torch.argsort(ids * len(ids) + torch.arange(len(ids)))]


def _assert_same_step(single: dict, ranks: list[dict]) -> None:
    torch.testing.assert_close(ranks[0]["loss"], single["loss"], rtol=1e-4, atol=1e-5)
    state = single["state"]
    for key, value in state.items():
        if not isinstance(value, torch.Tensor) or key.startswith("queue"):
            continue  # the queue is compared by dataset index below
        if key.endswith(BN_STATS):
            got = torch.stack([r["state"][key] for r in ranks]).mean(dim=0)
        else:
            got = ranks[0]["state"][key]
        if value.is_floating_point():
            torch.testing.assert_close(got, value, rtol=1e-3, atol=1e-5, msg=key)
        else:
            assert torch.equal(got, value), key
    torch.testing.assert_close(_queue_by_id(ranks[0]["state"]), _queue_by_id(state),
                               rtol=1e-3, atol=1e-5)  # fmt: skip
    assert int(ranks[0]["state"]["queue.pointer"]) == int(state["queue.pointer"])


def test_two_processes_take_the_single_process_moco_step(tmp_path):
    (single,) = _step(tmp_path, "moco", 1)
    _assert_same_step(single, _step(tmp_path, "moco", 2))


def test_hcsc_clusters_once_and_every_rank_gets_the_same_prototypes(tmp_path):
    """The E-step is process-count independent; the step itself is not, on purpose.

    HCSC's negative prototypes exclude the positives of the per-process batch (as the
    authors' code does), so its loss depends on how the batch is
    split; what must not depend on it is the clustering every rank trains against.
    """
    (single,) = _step(tmp_path, "hcsc", 1)
    ranks = _step(tmp_path, "hcsc", 2)
    extra = [r["state"]["_extra_state"] for r in ranks]
    assert extra[0]["levels"] == 2
    for name, value in extra[0].items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(extra[1][name], value), name  # broadcast from rank 0
            torch.testing.assert_close(single["state"]["_extra_state"][name], value,
                                       rtol=1e-3, atol=1e-4, msg=name)  # fmt: skip
    assert all(np.isfinite(r["loss"]) for r in ranks)
    for key, value in ranks[0]["state"].items():  # DDP kept the weights in step
        if isinstance(value, torch.Tensor) and not key.endswith(BN_STATS):
            assert torch.equal(ranks[1]["state"][key], value) or key.startswith("queue"), key


def test_shuffle_bn_runs_and_changes_only_the_keys(tmp_path):
    plain = _step(tmp_path, "moco", 2)
    shuffled = _step(tmp_path, "moco", 2, "--shuffle-bn")
    assert np.isfinite(shuffled[0]["loss"])
    assert shuffled[0]["loss"] != pytest.approx(plain[0]["loss"], rel=1e-6)
    for key, value in plain[0]["state"].items():
        if key.startswith("target.") and not key.endswith((*BN_STATS, "num_batches_tracked")):
            # the key encoder's weights move by the momentum rule alone, before the step
            torch.testing.assert_close(shuffled[0]["state"][key], value, msg=key)
    assert not torch.equal(shuffled[0]["state"]["queue.buffer"], plain[0]["state"]["queue.buffer"])


def test_extraction_under_torchrun_writes_every_row_in_order(tmp_path, digits_run):
    """2 processes embed their shares; the file holds N rows in dataset order, as 1 process."""
    outputs = {}
    for processes in (1, 2):
        out = tmp_path / f"features-{processes}.h5"
        launcher = ([sys.executable] if processes == 1 else
                    [sys.executable, "-m", "torch.distributed.run", "--standalone",
                     "--nproc-per-node", str(processes)])  # fmt: skip
        command = [*launcher, "-m", "sslkit", "extract", "--checkpoint",
                   str(digits_run / "checkpoint.pt"), "--data", "digits", "--split", "test",
                   "--batch-size", "64", "--out", str(out),
                   "--json", f"{out}.json"]  # fmt: skip
        done = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        assert json.loads(Path(f"{out}.json").read_text())["rows"] == 450
        with h5py.File(out) as handle:
            outputs[processes] = {name: handle[name][()] for name in ("features", "indices")}
    assert outputs[2]["indices"].tolist() == list(range(450))
    np.testing.assert_allclose(outputs[2]["features"], outputs[1]["features"], atol=1e-5)
