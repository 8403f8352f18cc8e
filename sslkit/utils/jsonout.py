"""Machine-readable results: ``--json PATH`` (or ``-`` for stdout)."""

from __future__ import annotations

import json
import sys
from typing import Any

from sslkit.utils.atomic import atomic_path


def write_json(result: dict[str, Any], destination: str | None) -> None:
    """Write ``result`` as JSON to ``destination`` (a path, ``-`` for stdout, None to skip)."""
    if destination is None:
        return
    text = json.dumps(result, indent=2, default=str) + "\n"  # keys in the order built
    if destination == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    with atomic_path(destination) as tmp:
        tmp.write_text(text)
