"""What the API functions return: read-only results whose ``to_dict()`` is the command's JSON.

A result is a mapping over the JSON body (``result["inputs"]``) with a few typed
shortcuts per command (``result.top1``, ``result.checkpoint``), so a notebook can use it
directly and a script can dump ``to_dict()`` exactly as ``--json`` would.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Mapping
from typing import Any


class Result(Mapping[str, Any]):
    """The outcome of one API call.

    ``main_process`` is False on the other processes of a ``torchrun`` launch (they hold
    the same result but the command prints and writes on the main one only).
    """

    def __init__(self, data: dict[str, Any], main_process: bool = True) -> None:
        # held as JSON holds it (tuples as lists, paths as strings), so to_dict() == --json
        self._data = json.loads(json.dumps(data, default=str))
        self.main_process = main_process

    def to_dict(self) -> dict[str, Any]:
        """A deep copy of the JSON body: exactly what the command writes with ``--json``."""
        return copy.deepcopy(self._data)

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def summary(self) -> str:
        """One line for people (used by ``repr``)."""
        return ", ".join(sorted(self._data))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.summary()})"


class PretrainResult(Result):
    """A finished pre-training run (rank 0's summary)."""

    @property
    def checkpoint(self) -> str:
        """Path of the checkpoint written."""
        return self._data["checkpoint"]

    @property
    def final(self) -> dict[str, float]:
        """The last epoch's mean loss terms (and the kNN monitor, if on)."""
        return dict(self._data["final"])

    def summary(self) -> str:
        return (f"{self._data['method']} on {self._data['data']}, {self._data['epochs']} epochs"
                f" -> {self.checkpoint}")  # fmt: skip


class JobResult(Result):
    """A pre-training run submitted as a SLURM (or local submitit) job."""

    @property
    def job_id(self) -> str:
        """The scheduler's job id."""
        return self._data["job_id"]

    def summary(self) -> str:
        return f"job {self.job_id} ({self._data['launcher']}), workdir {self._data['workdir']}"


class ExtractResult(Result):
    """A feature file written."""

    @property
    def out(self) -> str:
        """Path of the HDF5 feature file."""
        return self._data["out"]

    def summary(self) -> str:
        return f"{self._data['rows']} x {self._data['dim']} features -> {self.out}"


class KnnResult(Result):
    """Weighted-kNN accuracies for every k."""

    @property
    def top1(self) -> dict[int, float]:
        """Top-1 accuracy in % for every k."""
        return {int(k): row["top1"] for k, row in self._data["k"].items()}

    @property
    def top5(self) -> dict[int, float]:
        """Top-5 accuracy in % for every k."""
        return {int(k): row["top5"] for k, row in self._data["k"].items()}

    @property
    def best(self) -> dict[str, Any]:
        """The k with the best top-1, and its scores."""
        return dict(self._data["best"])

    def summary(self) -> str:
        best = self._data["best"]
        return f"best top-1 {best['top1']:.2f} % at k={best['k']}"


class ClusterResult(Result):
    """A (hierarchical) k-means, with AMI / NMI / purity per level when labelled."""

    @property
    def levels(self) -> list[dict[str, Any]]:
        """One row per level: ``level``, ``k``, ``non_empty`` (and the scores in %)."""
        return [dict(row) for row in self._data["levels"]]

    def summary(self) -> str:
        parts = [f"k={row['k']}" + (f" AMI {row['ami']:.1f} %" if "ami" in row else "")
                 for row in self._data["levels"]]  # fmt: skip
        return "; ".join(parts) + f" -> {self._data['out']}"


class AccuracyResult(Result):
    """A trained classifier's test accuracy (``linear``, ``semisup``)."""

    @property
    def top1(self) -> float:
        """Final top-1 accuracy in %."""
        return float(self._data["result"]["top1"])

    @property
    def top5(self) -> float:
        """Final top-5 accuracy in %."""
        return float(self._data["result"]["top5"])

    def summary(self) -> str:
        return f"{self._data['protocol']}: top-1 {self.top1:.2f} %"


class LinearResult(AccuracyResult):
    """A linear probe on a frozen encoder."""


class SemisupResult(AccuracyResult):
    """Fine-tuning with a fraction of the labels."""


class TransferResult(Result):
    """A frozen encoder transferred to another labelled collection."""

    @property
    def result(self) -> dict[str, Any]:
        """The protocol's scores (top-1 %, mAP %, ...)."""
        return copy.deepcopy(self._data["result"])

    def summary(self) -> str:
        result = self._data["result"]
        score = next((f"{key} {result[key]:.2f} %" for key in ("top1", "map")
                      if isinstance(result.get(key), int | float)), "")  # fmt: skip
        return f"{self._data['task']} ({result.get('protocol', '')}) {score}".strip()


class DetectResult(Result):
    """A detectron2 fine-tuning (or its dry run)."""

    @property
    def mean(self) -> dict[str, Any]:
        """Mean AP / AP50 / AP75 over the runs, per kind (bbox, segm)."""
        return copy.deepcopy(self._data.get("mean", {}))

    def summary(self) -> str:
        if self._data["dry_run"]:
            return f"dry run: {self._data['command_file']}"
        return f"{self._data['task']}: {len(self._data['runs'])} run(s)"
