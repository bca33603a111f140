"""Provenance: where a run's data came from and what launched it, beyond its config.

The train step writes it beside config.json (`provenance.json`), so that training started
elsewhere (torchrun's processes, a TrainJob's nodes) records the same thing in its MLflow run:
the dataset's DVC version and remote as the run's MLflow input, and the pipeline run as tags.

`code_version` names the code that computes a run: the package version and the git commit (baked
into the image as $ADAUTOMIX_GIT_COMMIT). The pipeline keys its checkpoint folders by it, and a
resume under another one is refused unless asked for (engine/checkpoint.py)."""

from __future__ import annotations

import functools
import json
import os
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import __version__

FILE_NAME = "provenance.json"
COMMIT_ENV = "ADAUTOMIX_GIT_COMMIT"


def git_commit() -> str:
    """The commit the code came from: $ADAUTOMIX_GIT_COMMIT (set in images) or git, else
    'unknown'."""
    return os.environ.get(COMMIT_ENV) or _checkout_commit()


@functools.lru_cache(maxsize=1)   # a checkout's HEAD does not move under a running process
def _checkout_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10, cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def code_version() -> str:
    """The code that computes a run: `PACKAGE_VERSION+COMMIT`."""
    return f"{__version__}+{git_commit()}"


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
