"""The feature cache: `sslkit knn --checkpoint` first run (extracts) vs second run (reads).

    python bench/bench_knn_cache.py CHECKPOINT [--data fashion-mnist]

Both runs are real subprocesses of the CLI with a fresh cache folder, so the times include
interpreter start-up and everything a user waits for.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile

from benchlib import timed_run


def main() -> None:
    """Run twice and print the times and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("checkpoint")
    parser.add_argument("--data", default="fashion-mnist")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        command = [sys.executable, "-m", "sslkit", "knn", "--checkpoint", args.checkpoint,
                   "--data", args.data, "--cache-dir", cache, "--json", "-"]  # fmt: skip
        first, first_out = timed_run(command)
        second, second_out = timed_run(command)
    assert not first_out["inputs"]["train"]["cache_hit"]
    assert second_out["inputs"]["train"]["cache_hit"]
    print(json.dumps({
        "data": args.data,
        "first_run_seconds": round(first, 2),
        "second_run_seconds": round(second, 2),
        "speedup": round(first / second, 2),
        "same_result": first_out["best"] == second_out["best"],
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
