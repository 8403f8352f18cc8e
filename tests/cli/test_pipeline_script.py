"""examples/pipeline.sh runs end to end as a real subprocess chain."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_pipeline_script(tmp_path):
    """set -euo pipefail script: pretrain -> extract -> knn, final line reports kNN."""
    env = {**os.environ, "EPOCHS": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}  # fmt: skip
    done = subprocess.run(["bash", str(ROOT / "examples" / "pipeline.sh"), str(tmp_path / "w")],
                          capture_output=True, text=True, env=env, timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("pipeline ok: kNN top-1 ")
    assert float(last.split()[4]) > 50.0
