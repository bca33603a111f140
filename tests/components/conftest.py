"""One tiny workspace, data step and training run, shared by the component tests."""

from __future__ import annotations

import pytest
from kfp import dsl

from components.data import data
from components.train import train
from tests.components.step_arguments import PIPELINE_RUN, TRAINING
from tests.workspaces import tiny_workspace


@pytest.fixture(scope="session")
def prepared(tmp_path_factory):
    """The data step's outputs over a tiny Fashion-MNIST: (workspace, version, Dataset)."""
    root = tmp_path_factory.mktemp("components")
    workspace = tiny_workspace(root)
    artifact = dsl.Dataset(name="prepared", uri=str(root / "prepared"))
    version = data.python_func(
        dataset="fashion-mnist",
        data_version="",
        workspace=str(workspace),
        remote="",
        prepared=artifact,
    )
    return workspace, version, artifact


@pytest.fixture(scope="session")
def trained(mlflow_server, prepared, tmp_path_factory):
    """The train step's outputs: (run id, Model artifact), tracked on the session's server."""
    workspace, version, dataset = prepared
    checkpoint = dsl.Model(name="checkpoint", uri=str(tmp_path_factory.mktemp("train") / "model"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
        run_id = train.python_func(
            prepared=dataset,
            config={**TRAINING, "experiment": "components"},
            overrides={},
            workspace=str(workspace),
            checkpoint=checkpoint,
            **PIPELINE_RUN,
        )
    return run_id, checkpoint
