"""Helpers shared by the benchmark scripts (run as ``python bench/<script>.py``)."""

from __future__ import annotations

import json
import subprocess
import time


def timed_run(command: list[str]) -> tuple[float, dict]:
    """Wall seconds and parsed JSON output (stdout) of one CLI subprocess."""
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return time.perf_counter() - started, json.loads(done.stdout)
