"""The train step with more than one GPU: torch's launcher starts one process per GPU (Gloo
processes here, on the CPU), the result is read back from the checkpoint they wrote, and a rank
that fails fails the step with the checkpoint intact."""

from __future__ import annotations

import re

import pytest
from kfp import dsl

from adautomix.engine.checkpoint import load_checkpoint
from components.train import train
from tests.components.step_arguments import PIPELINE_RUN, TRAINING


def launch(prepared, tmp_path, **changes):
    workspace, version, dataset = prepared
    checkpoint = dsl.Model(name="checkpoint", uri=str(tmp_path / "model"))
    run_id = train.python_func(
        prepared=dataset,
        config={**TRAINING, "experiment": "launch", **changes},
        overrides={},
        workspace=str(workspace),
        checkpoint=checkpoint,
        num_gpus=2,
        **PIPELINE_RUN,
    )
    return run_id, checkpoint


@pytest.mark.slow
def test_two_processes_train_the_run_and_pass_on_its_checkpoint(
    prepared, mlflow_server, monkeypatch, tmp_path
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    run_id, checkpoint = launch(prepared, tmp_path, seed=1)
    state = load_checkpoint(checkpoint.path)
    assert state["epoch"] == TRAINING["epochs"] and state["run_id"] == run_id
    assert checkpoint.metadata["run_id"] == run_id and "val_top1" in checkpoint.metadata


def test_a_failing_rank_fails_the_step_and_names_the_launcher(prepared, tmp_path, capfd):
    # 11 images do not split over 2 processes: each rank refuses at set-up, before a checkpoint
    with pytest.raises(SystemExit) as stopped:
        launch(prepared, tmp_path, batch_size=11, seed=2)
    assert stopped.value.code == 1  # the step failed, in one line
    err = capfd.readouterr().err
    assert re.search(
        r"error: torchrun with 2 processes exited with status [1-9].*re-run resumes", err
    )
    # each rank's one line (torchrun adds its own report of the failed children), then the step's
    assert (
        err.count(
            "error: batch_size 11 is the global batch and must split evenly over the 2 processes"
        )
        == 2
    )
    assert err.rstrip().splitlines()[-1].startswith("error: torchrun with 2 processes")
