"""Peak memory of ConIC's classifier at N = 1 M instances (dim 128): full vs sampled.

    python bench/bench_conic_memory.py [--instances 1000000] [--batch-size 256] [--steps 3]

Each variant runs in its own subprocess (so peaks do not mix), on random unit features
standing in for the backbone (the network's memory is the same in both and left out):
``--steps`` training steps of the classification loss over both views (2 x batch rows),
backward, and the classifier's SGD update (momentum 0.9, weight decay 1e-4). Reported:
the process's peak resident memory above an idle subprocess that only imports torch,
and the bytes that would sit on an accelerator: everything for ``full`` (weights,
momenta, gradients, logits), the pool and its logits for ``sampled`` (the host store of
N weights and momenta stays in host memory; on this CPU-only machine both are RAM).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def run_variant(variant: str, instances: int, batch: int, steps: int, pool: int) -> dict:
    """One variant in this process: peak RSS (MiB) and seconds per step."""
    import torch
    import torch.nn.functional as F

    from sslkit.methods.conic import full_classification_loss, sampled_classification_loss
    from sslkit.nn.sampled_classifier import SampledClassifier

    torch.manual_seed(0)
    dim, rows = 128, 2 * batch
    device_bytes = 0
    if variant == "full":
        weights = torch.nn.Parameter(torch.randn(instances, dim))
        optimizer = torch.optim.SGD([weights], lr=0.06, momentum=0.9, weight_decay=1e-4)
        device_bytes = 3 * instances * dim * 4 + 2 * rows * instances * 4  # w, v, grad; logits
    elif variant == "sampled":
        classifier = SampledClassifier(instances, dim, pool, 0.9, 1e-4)
        device_bytes = 3 * pool * dim * 4 + 2 * rows * pool * 4
    started = time.perf_counter()
    for step in range(steps):
        if variant == "idle":
            break
        features = F.normalize(torch.randn(rows, dim), dim=1).requires_grad_(True)
        indices = torch.randint(0, instances, (batch,))
        targets = torch.cat([indices, indices])
        if variant == "full":
            loss = full_classification_loss(features, weights, targets, 0.1)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        else:
            classifier.bring_in(indices)
            beta = (instances - 1) / (classifier.pool_size - 1)
            loss = sampled_classification_loss(features, classifier.pool_weight,
                                               classifier.slots(targets), 0.1, beta)  # fmt: skip
            loss.backward()
            classifier.sgd_step(0.06)
        del step
    seconds = (time.perf_counter() - started) / max(steps, 1)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB on Linux
    return {"variant": variant, "peak_rss_mib": round(peak, 1),
            "device_resident_mib": round(device_bytes / 2**20, 1),
            "seconds_per_step": round(seconds, 3)}  # fmt: skip


def main() -> None:
    """Run idle, full and sampled in subprocesses; print their peaks and ratios."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--instances", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--pool", type=int, default=65536)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(run_variant(args.variant, args.instances, args.batch_size,
                                     args.steps, args.pool)))  # fmt: skip
        return
    results = {}
    for variant in ("idle", "full", "sampled"):
        command = [sys.executable, __file__, "--variant", variant,
                   "--instances", str(args.instances), "--batch-size", str(args.batch_size),
                   "--steps", str(args.steps), "--pool", str(args.pool)]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        results[variant] = json.loads(done.stdout.strip().splitlines()[-1])
    idle = results["idle"]["peak_rss_mib"]
    for variant in ("full", "sampled"):
        results[variant]["peak_above_idle_mib"] = round(results[variant]["peak_rss_mib"] - idle, 1)
    full, sampled = results["full"], results["sampled"]
    print(json.dumps({
        "instances": args.instances, "dim": 128, "batch_size": args.batch_size,
        "pool": args.pool, "results": results,
        "ratio_sampled_vs_full_peak": round(sampled["peak_above_idle_mib"]
                                            / full["peak_above_idle_mib"], 3),
        "ratio_sampled_vs_full_device": round(sampled["device_resident_mib"]
                                              / full["device_resident_mib"], 4),
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
