"""What the feature cache buys the linear probe: features mode vs re-embedding every epoch.

    python bench/bench_linear_cache.py CHECKPOINT [--data fashion-mnist@10000] [--epochs 3]

Three real CLI subprocesses with a fresh cache folder, in this order:
1. ``sslkit linear --mode features`` (cache miss: embeds train and test once, then trains);
2. the same again (cache hit: reads the features, trains);
3. ``sslkit linear --mode augment`` (embeds a fresh augmented training set every epoch;
   its test features come from the cache filled by run 1, so only the per-epoch
   embedding differs from run 2).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile

from benchlib import timed_run


def main() -> None:
    """Run the three probes and print times and ratios as JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("checkpoint")
    parser.add_argument("--data", default="fashion-mnist@10000")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=0.01)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        base = [sys.executable, "-m", "sslkit", "linear", "--checkpoint", args.checkpoint,
                "--data", args.data, "--recipe", "adco", "--lr", str(args.lr), "--epochs",
                str(args.epochs), "--cache-dir", cache, "--json", "-"]  # fmt: skip
        miss, miss_out = timed_run([*base, "--mode", "features"])
        hit, hit_out = timed_run([*base, "--mode", "features"])
        augment, augment_out = timed_run([*base, "--mode", "augment"])
    assert hit_out["inputs"]["train"]["cache_hit"]
    print(json.dumps({
        "data": args.data, "epochs": args.epochs,
        "features_mode_first_run_seconds": round(miss, 2),
        "features_mode_cached_seconds": round(hit, 2),
        "augment_mode_seconds": round(augment, 2),
        "speedup_cached_vs_augment": round(augment / hit, 2),
        "speedup_cached_vs_first": round(miss / hit, 2),
        "top1": {"features": hit_out["result"]["top1"], "augment": augment_out["result"]["top1"]},
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
