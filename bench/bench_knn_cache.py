"""The caches of `sslkit knn --checkpoint`: first run (extracts) vs the runs after it.

    python bench/bench_knn_cache.py CHECKPOINT [--data fashion-mnist]

Three real subprocesses of the CLI with a fresh cache folder, so the times include
interpreter start-up and everything a user waits for: the first run extracts and
searches; the second (same command) reads the cached features and the stored neighbour
search; the third runs after the stored searches are deleted, so it reads the features
and searches again (what the feature cache alone buys).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

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
        for stored in Path(cache).glob("neighbours-*.h5"):
            stored.unlink()
        third, third_out = timed_run(command)
    assert not first_out["inputs"]["train"]["cache_hit"]
    assert second_out["inputs"]["train"]["cache_hit"] and second_out["neighbours_cache_hit"]
    assert third_out["inputs"]["train"]["cache_hit"] and not third_out["neighbours_cache_hit"]
    print(json.dumps({
        "data": args.data,
        "first_run_seconds": round(first, 2),
        "second_run_seconds": round(second, 2),
        "speedup": round(first / second, 2),
        "features_only_seconds": round(third, 2),
        "features_only_speedup": round(first / third, 2),
        "same_result": first_out["best"] == second_out["best"] == third_out["best"],
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
