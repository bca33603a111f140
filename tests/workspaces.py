"""A git-less DVC workspace seeded from the project, for the DVC, component and pipeline tests."""

from __future__ import annotations

import shutil
from pathlib import Path

from dvc.repo import Repo

from adautomix.data import prepare
from adautomix.data.versioning import init_workspace
from tests.data import fixtures

PROJECT = Path(__file__).resolve().parents[1]


def tiny_workspace(root: Path, n_train: int = 20, n_test: int = 10) -> Path:
    """The project's DVC config in `root`, its data.dvc tracking a tiny synthetic Fashion-MNIST
    (noise images, real on-disk format) that is prepared but in no cache or remote yet."""
    workspace = init_workspace(root / "workspace", PROJECT)
    source = fixtures.make_fashion_mnist(root / "raw", n_train=n_train, n_test=n_test)
    prepare("fashion-mnist", source=source, data_root=workspace / "data")
    with Repo(str(workspace)) as repo:
        repo.commit(str(workspace / "data.dvc"), force=True)
    shutil.rmtree(workspace / ".dvc" / "cache")
    return workspace
