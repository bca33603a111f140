"""The train component: a checkpoint folder keyed by the run, resumed when the step runs again."""

from __future__ import annotations

import torch
from kfp import dsl

from adautomix.config import RunConfig
from adautomix.engine.checkpoint import load_checkpoint
from adautomix.steps import checkpoint_dir
from components.train import train
from tests.components.step_arguments import PIPELINE_RUN, TRAINING


def test_the_artifact_is_the_final_checkpoint_and_config(trained):
    run_id, checkpoint = trained
    state = load_checkpoint(checkpoint.path)
    config = RunConfig.load(f"{checkpoint.path}/config.json")
    assert state["epoch"] == config.epochs == 1 and state["run_id"] == run_id
    assert checkpoint.metadata["run_id"] == run_id and "val_top1" in checkpoint.metadata


def test_the_mlflow_run_names_the_pipeline_run_and_the_dvc_version(trained, prepared, mlflow_http):
    import mlflow

    run_id, _ = trained
    _, version, dataset = prepared
    run = mlflow.get_run(run_id)
    assert run.data.tags["kfp_run_id"] == "run-0123"
    assert run.data.tags["kfp_pipeline"] == "adautomix-training"
    assert run.data.tags["kfp_run_name"] == "adautomix-training-20261201"
    assert run.info.run_name == "mixup-resnet18-fashion-mnist-seed0"
    (logged,) = run.inputs.dataset_inputs
    assert logged.dataset.digest == version
    assert (
        dataset.metadata["remote_url"] and dataset.metadata["remote_url"] in logged.dataset.source
    )


def test_running_the_step_again_resumes_its_checkpoint_instead_of_training_again(
    trained, prepared, mlflow_http, tmp_path
):
    run_id, first = trained
    workspace, version, dataset = prepared
    again = dsl.Model(name="checkpoint", uri=str(tmp_path / "model"))
    assert (
        train.python_func(
            prepared=dataset,
            config={**TRAINING, "experiment": "components"},
            overrides={},
            workspace=str(workspace),
            checkpoint=again,
            **PIPELINE_RUN,
        )
        == run_id
    )
    before, after = load_checkpoint(first.path), load_checkpoint(again.path)
    assert after["step"] == before["step"]
    assert all(torch.equal(after["model"][k], v) for k, v in before["model"].items())


def test_the_checkpoint_folder_is_keyed_by_what_the_run_computes(tmp_path):
    config = RunConfig(**TRAINING)
    key = checkpoint_dir(tmp_path, config, "a" * 32 + ".dir")
    assert key == checkpoint_dir(
        tmp_path, config.replace(run_name="x", data_root="/mnt/d", num_workers=0), "a" * 32 + ".dir"
    )
    assert key != checkpoint_dir(tmp_path, config, "b" * 32 + ".dir")
    assert key != checkpoint_dir(tmp_path, config.replace(lr=0.01), "a" * 32 + ".dir")
    assert key.name.startswith("fashion-mnist-resnet18-mixup-seed0-")
