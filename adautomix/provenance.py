"""Provenance: where a run's data came from and what launched it, beyond its config.

The train step writes it beside config.json (`provenance.json`), so that training started
elsewhere (torchrun's processes, a TrainJob's nodes) records the same thing in its MLflow run:
the dataset's DVC version and remote as the run's MLflow input, and the pipeline run as tags."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

FILE_NAME = "provenance.json"


@dataclass(frozen=True)
class Provenance:
    data_version: str = ""      # the DVC version; '' records the dataset's content hash instead
    data_source: str = ""       # the DVC remote's URL; '' records the local dataset folder
    tags: dict[str, str] = field(default_factory=dict)   # e.g. the pipeline run's id and name

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / FILE_NAME
        path.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")
        return path

    @classmethod
    def load(cls, folder: str | Path) -> "Provenance":
        """The provenance saved in `folder`, or an empty one (a run started by hand)."""
        path = Path(folder) / FILE_NAME
        if not path.exists():
            return cls()
        values = json.loads(path.read_text())
        return cls(str(values.get("data_version", "")), str(values.get("data_source", "")),
                   {str(k): str(v) for k, v in values.get("tags", {}).items()})
