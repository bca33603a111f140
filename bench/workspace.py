"""A scratch DVC workspace seeded from this checkout, for benchmarks that run the pipeline as a
user would: Fashion-MNIST prepared and already in the DVC cache (the steady state; a first run
also caches it), and a fresh SQLite MLflow store beside it, so no earlier run is resumed,
compared against or registered over."""

from __future__ import annotations

import os
from pathlib import Path

from adautomix.data import prepare
from adautomix.data.versioning import init_workspace, materialise

ROOT = Path(__file__).resolve().parents[1]


def fresh_workspace(scratch: Path) -> tuple[Path, dict[str, str]]:
    """The workspace under `scratch` and the environment to run the CLIs in (its MLflow store,
    and this checkout on PYTHONPATH: the pipeline layer is not installed)."""
    workspace = init_workspace(scratch / "workspace", ROOT)
    prepare("fashion-mnist", data_root=workspace / "data")
    materialise("fashion-mnist", "", workspace)
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{scratch / 'mlflow.db'}",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    return workspace, env
