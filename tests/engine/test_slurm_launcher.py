"""``sslkit pretrain --launcher``: SLURM jobs through submitit, tried with its local executor.

The job's tasks join the process group from submitit's job environment (the torchrun
variables), so 2 local tasks train as 2 gloo processes; a preempted job requeues itself
with ``--resume`` and continues from its checkpoint.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import sys
import time

import pytest

from sslkit.engine.slurm import (
    PORT_BASE,
    PORT_RANGE,
    JobResources,
    PretrainJob,
    distributed_env,
    master_port,
)
from sslkit.engine.workdir_lock import LOCK_NAME
from sslkit.errors import BadInput
from tests.conftest import run_cli

submitit = pytest.importorskip("submitit", reason="submitit is not installed: pip install "
                               "'sslkit[slurm]' (it is in the dev extra)")  # fmt: skip

QUICK = ["--method", "moco", "--data", "digits@256", "--batch-size", "64", "--arch", "resnet18",
         "--set", "method.queue_size=256"]  # fmt: skip


def test_every_task_of_a_job_derives_the_same_rendezvous():
    """RANK/LOCAL_RANK/WORLD_SIZE per task; MASTER_ADDR/PORT identical for all of a job."""
    envs = [distributed_env(rank, rank % 4, 8, 2, ["node-a", "node-b"], "123_4")
            for rank in range(8)]  # fmt: skip
    assert [env["RANK"] for env in envs] == [str(r) for r in range(8)]
    assert envs[5]["LOCAL_RANK"] == "1" and envs[5]["LOCAL_WORLD_SIZE"] == "4"
    assert {env["MASTER_ADDR"] for env in envs} == {"node-a"}
    assert {env["MASTER_PORT"] for env in envs} == {str(master_port("123_4"))}
    assert PORT_BASE <= master_port("98765") < PORT_BASE + PORT_RANGE
    assert master_port("98765") != master_port("98766")


def test_tasks_default_to_one_per_gpu():
    """One process per GPU; one on a CPU node; an explicit count wins."""
    assert JobResources(gpus_per_node=8).tasks == 8
    assert JobResources().tasks == 1
    assert JobResources(gpus_per_node=8, tasks_per_node=2).tasks == 2


def test_preempted_job_requeues_resuming_never_forcing():
    """checkpoint() (submitit's preemption / timeout hook) resubmits with --resume only."""
    params = {"method_name": "moco", "resume": False, "force": True, "epochs": 3}
    delayed = PretrainJob(params).checkpoint()
    assert isinstance(delayed, submitit.helpers.DelayedSubmission)
    assert isinstance(delayed.function, PretrainJob)
    assert delayed.function.params == {**params, "resume": True, "force": False}


@pytest.mark.skipif(shutil.which("srun") is not None, reason="this machine has SLURM")
def test_slurm_launcher_without_slurm_is_one_line_exit_2(tmp_path):
    """No srun here: exit 2 saying so and what to do, nothing submitted."""
    result = run_cli("pretrain", *QUICK, "--workdir", tmp_path / "run", "--launcher", "slurm",
                     expect=2)  # fmt: skip
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "no SLURM" in lines[0] and "--launcher local" in lines[0]
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_launcher_without_submitit_says_how_to_install(tmp_path, monkeypatch):
    """submitit missing: exit 2 with the pip command."""
    monkeypatch.setitem(sys.modules, "submitit", None)  # import submitit -> ImportError
    result = run_cli("pretrain", *QUICK, "--workdir", tmp_path / "run", "--launcher", "local",
                     expect=2)  # fmt: skip
    assert "pip install 'sslkit[slurm]'" in result.output


def test_launcher_checks_the_run_before_submitting(tmp_path):
    """A workdir holding a checkpoint is refused at submission, as without a launcher."""
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoint.pt").write_bytes(b"x")
    result = run_cli("pretrain", *QUICK, "--workdir", tmp_path / "run", "--launcher", "local",
                     expect=2)  # fmt: skip
    assert "--resume" in result.output and not (tmp_path / "run" / "slurm").exists()


@pytest.mark.distributed
def test_local_job_trains_on_two_processes_and_a_requeue_resumes(tmp_path):
    """2 local tasks train as 2 processes; the requeued job continues from the checkpoint."""
    workdir = tmp_path / "run"
    run_cli("pretrain", *QUICK, "--epochs", "1", "--workdir", workdir, "--launcher", "local",
            "--tasks-per-node", "2", "--wait", "--json", tmp_path / "job.json")  # fmt: skip
    job = json.loads((tmp_path / "job.json").read_text())
    assert job["launcher"] == "local" and job["tasks_per_node"] == 2
    assert job["summary"]["steps"] == 256 // 64 and (workdir / "checkpoint.pt").exists()
    start = json.loads((workdir / "metrics.jsonl").read_text().splitlines()[0])
    assert start["kind"] == "start" and start["world_size"] == 2
    assert json.loads((workdir / "slurm" / "summary.json").read_text())["epochs"] == 1

    # What submitit does on preemption: call checkpoint() and submit what it returns.
    with open(workdir / "slurm" / f"{job['job_id']}_submitted.pkl", "rb") as handle:
        submitted = pickle.load(handle).function
    assert submitted.params["no_progress"] is False  # progress lines go to the job's log
    log = "".join(path.read_text() for path in (workdir / "slurm").glob("*_0_log.err"))
    assert "[sslkit] pretrain: epoch 1/1" in log
    requeued = PretrainJob({**submitted.params, "epochs": 2}).checkpoint()
    executor = submitit.AutoExecutor(folder=workdir / "slurm", cluster="local")
    executor.update_parameters(tasks_per_node=2, nodes=1, timeout_min=10)
    results = executor.submit(requeued.function, *requeued.args).results()
    summary = next(result for result in results if result)
    assert summary["epochs"] == 2 and summary["steps"] == 2 * 256 // 64
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    starts = [record for record in records if record["kind"] == "start"]
    assert [(start["epoch"], start["world_size"]) for start in starts] == [(0, 2), (1, 2)]
    assert [record["epoch"] for record in records if record["kind"] == "epoch"] == [1, 2]


def test_job_names_and_partitions_stay_literal(tmp_path):
    """What goes into the batch script SLURM runs is one literal word, or refused."""
    from sslkit.engine.slurm import job_name, submit_pretrain

    assert job_name("moco+cld") == "sslkit-moco+cld"
    assert job_name("x; touch pwned") == "sslkit-x__touch_pwned"
    assert job_name("$(touch x)") == "sslkit-__touch_x_"
    with pytest.raises(BadInput, match="not a SLURM partition name"):
        submit_pretrain({"method": "moco"}, JobResources(partition="gpu; rm -rf ~"), "local",
                        tmp_path)  # fmt: skip


@pytest.mark.parametrize("signal_name", ["SIGUSR1", "SIGTERM"])
def test_signalled_job_checkpoints_requeues_and_finishes(tmp_path, signal_name):
    """SLURM's warning signal: the step ends, a checkpoint is written, the job requeues
    itself with --resume and finishes the run; no step is lost or logged twice."""
    workdir = tmp_path / "run"
    args = ["--method", "moco", "--data", "digits@256", "--batch-size", "32", "--epochs", "2",
            "--set", "method.queue_size=128", "--set", "train.log_every=1",
            "--set", "train.checkpoint_every_minutes=0", "--set", "train.plot_curves=false",
            "--no-progress", "--workdir", str(workdir)]  # fmt: skip
    params = _api_params(args)
    executor = submitit.AutoExecutor(folder=workdir / "slurm", cluster="local")
    executor.update_parameters(tasks_per_node=1, nodes=1, timeout_min=10)
    job = executor.submit(PretrainJob(params))
    deadline = time.monotonic() + 300
    while not _steps(workdir) or max(_steps(workdir)) < 3:
        assert time.monotonic() < deadline and job.get_info()["jobState"] == "RUNNING", \
            job.stderr()  # fmt: skip
        time.sleep(0.05)
    pid = int((workdir / LOCK_NAME).read_text().split()[1])
    os.kill(pid, getattr(signal, signal_name))
    summary = next(result for result in job.results() if result)
    assert summary["epochs"] == 2 and summary["steps"] == 16
    assert summary["resumed_from"]["step"] >= 3 and summary["resumed_from"]["batches_done"]
    assert _steps(workdir) == list(range(1, 17)), "every step logged exactly once"
    log = "".join(path.read_text() for path in (workdir / "slurm").glob("*_0_log.out"))
    assert f"stopped by {signal_name}" in log and "requeueing" in log


def _api_params(args: list[str]) -> dict:
    """The keyword arguments ``sslkit.pretrain`` would get from these CLI options."""
    from sslkit.commands.pretrain import pretrain as command

    ctx = command.make_context("pretrain", list(args))
    options = dict(ctx.params)
    options.pop("json_path"), options.pop("launcher")
    for key in ("nodes", "gpus_per_node", "tasks_per_node", "cpus_per_task", "timeout_min",
                "partition", "wait"):  # fmt: skip
        options.pop(key)
    from sslkit.api.pretrain import parse_overrides

    method = options.pop("method_name")
    overrides = parse_overrides(options.pop("overrides"))
    return {"method": method, "overrides": overrides, **options}


def _steps(workdir) -> list[int]:
    path = workdir / "metrics.jsonl"
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return [record["step"] for record in records if record["kind"] == "step"]
