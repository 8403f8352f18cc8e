"""``sslkit pretrain --launcher slurm``: the same training as a SLURM job, through submitit.

One task per GPU on every node (or ``tasks_per_node`` CPU processes); each task joins the
process group from submitit's job environment, exactly as a torchrun worker does from
torchrun's variables, and runs the ordinary ``pretrain``. When SLURM preempts the job or
its time runs out, SLURM signals the job first (submitit asks for SIGUSR2; SIGTERM and
SIGUSR1 count too): the training finishes its step and writes a checkpoint, then the job
calls submitit's requeue, which asks :meth:`PretrainJob.checkpoint` for the job to run
next: the same with ``resume=True``, continuing at the next step. ``--launcher local`` runs
the same job with submitit's local executor on this machine (to try a launch, and the tests).
submitit is optional: ``pip install 'sslkit[slurm]'``.
"""

from __future__ import annotations

import os
import re
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sslkit.errors import BadInput

LOG_FOLDER = "slurm"  # inside the workdir: submitit's scripts, stdout/stderr and results
SUMMARY_FILE = "summary.json"  # in LOG_FOLDER: the job's pretrain summary (rank 0)
PORT_BASE, PORT_RANGE = 20000, 20000


@dataclass(frozen=True)
class JobResources:
    """What the job asks SLURM for."""

    nodes: int = 1
    gpus_per_node: int = 0
    tasks_per_node: int | None = None  # default: one per GPU (one on a CPU node)
    cpus_per_task: int = 8
    timeout_min: int = 72 * 60
    partition: str | None = None

    @property
    def tasks(self) -> int:
        """Processes per node."""
        return self.tasks_per_node or max(1, self.gpus_per_node)


SAFE_NAME = re.compile(r"[A-Za-z0-9_.,+-]+")


def job_name(method: str) -> str:
    """``sslkit-<method>`` with anything but letters, digits and ``_.+-`` replaced by
    ``_``: the name goes into the batch script SLURM runs, so it must stay one literal word
    (submitit quotes values too; this keeps the name readable in ``squeue``)."""
    return "sslkit-" + re.sub(r"[^A-Za-z0-9_.+-]", "_", str(method))[:100]


def master_port(job_id: str) -> int:
    """A rendezvous port every task of a job derives alike from its id."""
    digits = re.sub(r"\D", "", str(job_id)) or "0"
    return PORT_BASE + int(digits) % PORT_RANGE


def distributed_env(global_rank: int, local_rank: int, num_tasks: int, num_nodes: int,
                    hostnames: list[str], job_id: str) -> dict[str, str]:  # fmt: skip
    """The torchrun variables ``sslkit.distributed.setup`` reads, for one task."""
    return {
        "RANK": str(global_rank),
        "LOCAL_RANK": str(local_rank),
        "WORLD_SIZE": str(num_tasks),
        "LOCAL_WORLD_SIZE": str(num_tasks // max(1, num_nodes)),
        "MASTER_ADDR": hostnames[0] if hostnames else "localhost",
        "MASTER_PORT": str(master_port(job_id)),
    }


class PretrainJob:
    """What submitit runs on every task: join the process group, then pre-train.

    ``params`` are the keyword arguments of :func:`sslkit.pretrain` (plain values, so
    submitit can pickle them). Rank 0 returns the run's summary and writes it to
    ``WORKDIR/slurm/summary.json``; the other tasks return ``None``.
    """

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params

    def __call__(self) -> dict | None:
        import submitit

        from sslkit.api.pretrain import train
        from sslkit.errors import TrainingStopped
        from sslkit.utils.jsonout import write_json

        job = submitit.JobEnvironment()
        # submitit's handler of its preemption signal: checkpoint() + requeue + exit. The
        # trainer's own handlers replace it while training (to write a checkpoint first).
        requeue = signal.getsignal(getattr(signal, "SIG" + job.USR_SIG))
        os.environ.update(distributed_env(job.global_rank, job.local_rank, job.num_tasks,
                                          job.num_nodes, list(job.hostnames), job.job_id))
        try:
            result = train(self.params)
        except TrainingStopped as stopped:
            if callable(requeue) and job.global_rank == 0:
                print(f"sslkit: {stopped}; requeueing the job", flush=True)
                requeue(getattr(signal, "SIG" + job.USR_SIG), None)  # exits the process
            raise
        if not result.main_process:
            return None
        workdir = Path(result.checkpoint).parent
        write_json(result.to_dict(), str(workdir / LOG_FOLDER / SUMMARY_FILE))
        return result.to_dict()

    def checkpoint(self, *_args, **_kwargs):
        """Called by submitit on preemption or timeout: requeue, resuming (never --force)."""
        import submitit

        return submitit.helpers.DelayedSubmission(
            PretrainJob({**self.params, "resume": True, "force": False}))


def submit_pretrain(params: dict[str, Any], resources: JobResources, cluster: str,
                    workdir: Path):  # fmt: skip
    """Submit :class:`PretrainJob` ``(params)`` as one job of ``resources``; the submitit job."""
    try:
        import submitit
    except ImportError as exc:
        raise BadInput("--launcher needs submitit: pip install 'sslkit[slurm]' "
                       "(or launch with srun + torchrun, see docs/distributed.md)") from exc
    try:
        executor = submitit.AutoExecutor(folder=workdir / LOG_FOLDER, cluster=cluster)
    except RuntimeError as exc:  # submitit: 'Could not detect "srun"'
        raise BadInput("--launcher slurm: no SLURM on this machine (no srun); submit from the "
                       "cluster's login node, or try the job here with --launcher local") from exc
    options: dict[str, Any] = {
        "name": job_name(params["method"]), "nodes": resources.nodes,
        "tasks_per_node": resources.tasks, "gpus_per_node": resources.gpus_per_node,
        "cpus_per_task": resources.cpus_per_task, "timeout_min": resources.timeout_min,
    }  # fmt: skip
    if resources.partition and not SAFE_NAME.fullmatch(resources.partition):
        raise BadInput(f"--partition {resources.partition!r} is not a SLURM partition name: "
                       "use letters, digits, '_', '-', '.' and ',' only")  # fmt: skip
    if resources.partition and cluster == "slurm":
        options["slurm_partition"] = resources.partition
    executor.update_parameters(**options)
    return executor.submit(PretrainJob(params))
