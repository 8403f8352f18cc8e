"""examples/pipeline.sh runs end to end as a real subprocess chain."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_pipeline_script(tmp_path):
    """set -euo pipefail script: pretrain -> extract -> cluster -> knn -> linear -> semisup
    -> transfer; the final line reports each step's score."""
    env = {**os.environ, "EPOCHS": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}  # fmt: skip
    done = subprocess.run(["bash", str(ROOT / "examples" / "pipeline.sh"), str(tmp_path / "w")],
                          capture_output=True, text=True, env=env, timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("pipeline ok: kNN top-1 ")
    assert float(last.split()[4]) > 50.0
    fields = dict(part.strip().rsplit(" ", 1) for part in last.split(",")[1:])
    assert set(fields) == {"AMI", "linear top-1", "semisup top-1", "transfer top-1"}
    assert 0 < float(fields["AMI"]) <= 100 and float(fields["linear top-1"]) > 30.0
    assert 50.0 < float(fields["semisup top-1"]) <= 100  # measured 79.6 after 2 epochs
    assert all(len(value.split(".")[-1]) == 1 for value in fields.values())  # rounded
    assert float(fields["transfer top-1"]) > 30.0  # digits: 10 classes, chance 10 %
