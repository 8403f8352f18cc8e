"""``python -m tests.engine.kill_runner KIND:N -- pretrain ARGS``: ``sslkit`` that SIGKILLs
itself at one chosen instant (the kill storm's victim).

KIND is where the kill lands, counted from this process's start:

* ``step:N`` — inside the N-th training step (its batch is loaded, the forward not run);
* ``write:N`` — inside the N-th checkpoint write: the temporary file holds half the bytes,
  the rename has not happened;
* ``cluster:N`` — inside the N-th k-means (computed, not yet returned to the method);
* ``time:S`` — S seconds after this process's first training step began, wherever the
  process is then (in a step, a checkpoint write, the E-step, the logging).

Nothing in sslkit knows about this: the runner wraps library functions before it hands
the command line to ``sslkit.cli.main``.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path


def die() -> None:
    """SIGKILL this process (no handler, no cleanup: what the OOM killer or a node loss do)."""
    os.kill(os.getpid(), signal.SIGKILL)


def kill_on_call(owner: object, name: str, count: int,
                 before: bool = True, after: Callable | None = None) -> None:  # fmt: skip
    """Wrap ``owner.name`` so that its ``count``-th call dies (before running, or after
    running and calling ``after(args, result)``)."""
    original = getattr(owner, name)
    calls = {"n": 0}

    def wrapper(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == count and before:
            die()
        result = original(*args, **kwargs)
        if calls["n"] == count:
            if after is not None:
                after(args, result)
            die()
        return result

    setattr(owner, name, wrapper)


def _truncate_half(args, _result) -> None:
    path = Path(args[1])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _arm_timer_at_first_step(seconds: float) -> None:
    """Start a ``seconds`` timer that SIGKILLs the process when the first training step
    begins (counting from the start of the process would let a fast machine finish a
    short resumed run before the instant comes)."""
    from sslkit.engine.trainer import Trainer

    original = Trainer._to_batch
    started = {"done": False}

    def wrapper(*args, **kwargs):
        if not started["done"]:
            started["done"] = True
            timer = threading.Timer(seconds, die)
            timer.daemon = True
            timer.start()
        return original(*args, **kwargs)

    Trainer._to_batch = wrapper


def arm(plan: str) -> None:
    """Install the kill that ``plan`` (``KIND:N``) names."""
    kind, _, value = plan.partition(":")
    if kind == "time":
        _arm_timer_at_first_step(float(value))
        return
    count = int(value)
    if kind == "step":
        from sslkit.engine.trainer import Trainer

        kill_on_call(Trainer, "_to_batch", count)
    elif kind == "write":
        from sslkit.models import checkpoint

        kill_on_call(checkpoint.torch, "save", count, before=False, after=_truncate_half)
    elif kind == "cluster":
        from sslkit.clustering import kmeans

        kill_on_call(kmeans, "hierarchical_kmeans", count, before=False)
        kill_on_call(kmeans, "flat_kmeans", count, before=False)
    else:
        raise SystemExit(f"unknown kill kind {kind!r}: use step, write, cluster or time")


def main() -> None:
    """Arm the kill, then run ``sslkit`` with the arguments after ``--``."""
    plan, separator, *args = sys.argv[1:]
    assert separator == "--", "usage: kill_runner KIND:N -- pretrain ARGS"
    arm(plan)
    from sslkit.cli import cli

    cli.main(args=args, prog_name="sslkit")


if __name__ == "__main__":
    main()
