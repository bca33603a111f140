"""The whole pipeline on one machine (kfp.local), on a Fashion-MNIST subset: killed mid-training,
run again, it resumes from its checkpoint and registers the model it trained; a bad data version
stops it before anything is trained or registered; a sweep whose every model fails the registry
gate ends non-zero, naming the reason, and moves no champion."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid

import mlflow
import numpy as np
import pytest
import torch
import yaml

from adautomix.data.versioning import init_workspace
from adautomix.engine.checkpoint import load_checkpoint
from adautomix.engine.saved_run import load_run
from adautomix.tracking import connect
from pipeline.cli import main
from tests.workspaces import PROJECT

pytestmark = pytest.mark.slow


@pytest.fixture
def workspace(tmp_path, fmnist_root):
    """The project's DVC files, with the real Fashion-MNIST prepared (linked, not copied) but in
    no DVC cache or remote yet: a fresh checkout after `adautomix data prepare`."""
    workspace = init_workspace(tmp_path / "workspace", PROJECT)
    (workspace / "data" / "fashion-mnist").mkdir()
    for file in (fmnist_root / "fashion-mnist").iterdir():
        os.link(file, workspace / "data" / "fashion-mnist" / file.name)
    return workspace


def pipeline_command(
    workspace,
    experiment: str,
    model_name: str,
    *extra: str,
    method: tuple[str, ...] = ("--method", "vanilla"),
) -> list[str]:
    # 40 steps of 50 through a width-8 ResNet-18 clear the registry gate (15 % on ten classes);
    # 20 steps of 25 at lr 0.05 stayed at 11 % in one run
    return [
        "run",
        "--local",
        "--workspace",
        str(workspace),
        "--pipeline-root",
        str(workspace / "runs" / "pipeline"),
        "--dataset",
        "fashion-mnist",
        "--model",
        "resnet18",
        "--model-width",
        "8",
        *method,
        "--epochs",
        "2",
        "--batch-size",
        "50",
        "--lr",
        "0.1",
        "--subset",
        "1000",
        "--val-size",
        "100",
        "--test-subset",
        "200",
        "--num-gpus",
        "0",
        "--experiment",
        experiment,
        "--registered-model",
        model_name,
        *extra,
    ]


def run_until_first_checkpoint(command: list[str], workspace, timeout: float = 300) -> None:
    """Run the pipeline in its own process group and kill the whole group (the runner and its
    training step) as soon as the first epoch's checkpoint lands."""
    # The pipeline layer is not installed: the project root goes on the path, as from a checkout.
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT), os.environ.get("PYTHONPATH")])),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline", *command],
        cwd=workspace,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + timeout
    try:
        while not list((workspace / "runs" / "checkpoints").glob("*/checkpoint.pt")):
            assert process.poll() is None, "the pipeline ended before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint within the timeout"
            time.sleep(0.1)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def test_killed_mid_training_the_rerun_resumes_and_registers_the_trained_model(
    workspace, mlflow_http, capsys
):
    experiment, name = f"local-{uuid.uuid4().hex[:8]}", f"local-{uuid.uuid4().hex[:8]}"
    command = pipeline_command(workspace, experiment, name)
    run_until_first_checkpoint(command, workspace)
    (folder,) = (workspace / "runs" / "checkpoints").iterdir()
    killed = load_checkpoint(folder)
    assert killed["epoch"] == 1
    client = connect()
    assert not client.search_registered_models(f"name='{name}'")

    assert main(command) == 0
    out = capsys.readouterr().out
    final = load_checkpoint(folder)
    assert final["epoch"] == 2 and final["run_id"] == killed["run_id"]
    # one MLflow run, continued: epoch 1 was logged once, by the killed attempt
    history = client.get_metric_history(final["run_id"], "train_loss")
    assert [m.step for m in history] == [1, 2]
    assert client.get_run(final["run_id"]).info.status == "FINISHED"

    version = client.get_model_version_by_alias(name, "champion")
    assert version.run_id == final["run_id"]
    assert f"registered model {name} version {version.version}" in out
    assert "challenger, champion" in out and mlflow_http in out and "MLflow UI" in out
    assert version.tags["metric"] == "model_val_top1" and version.tags["gate"] == "passed"
    # the run page's link to the MLflow run: the evaluate step's Markdown output
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    (link,) = (workspace / "runs" / "pipeline").rglob("mlflow_run")
    assert link.read_text() == (
        f"[MLflow run {final['run_id']}]({mlflow_http}/#/experiments/"
        f"{experiment_id}/runs/{final['run_id']})\n"
    )
    served = mlflow.pytorch.load_model(f"models:/{name}@champion")
    trained = load_run(folder, device="cpu")
    images = torch.rand(4, 1, 28, 28)  # raw [0, 1]: the served model normalises
    normalised = (images - trained.loader.mean[0]) / trained.loader.std[0]
    with torch.inference_mode():
        np.testing.assert_allclose(
            served.eval()(images).numpy(),
            trained.ema_network.eval()(normalised).numpy(),
            rtol=1e-5,
            atol=1e-5,
        )


def test_a_sweep_the_gate_rejects_entirely_fails_and_moves_no_champion(
    workspace, mlflow_http, capsys
):
    experiment, name = f"local-{uuid.uuid4().hex[:8]}", f"local-{uuid.uuid4().hex[:8]}"
    command = pipeline_command(
        workspace,
        experiment,
        name,
        "--sweep",
        "--seeds",
        "0,1",
        "--min-score",
        "100",
        # no model clears 100 %: one short epoch each is enough to be rejected
        "--epochs",
        "1",
        "--subset",
        "300",
        "--results-page",
        str(workspace / "results.md"),
        method=("--methods", "vanilla"),
    )
    assert main(command) == 1
    captured = capsys.readouterr()
    assert "error:" in captured.err
    assert (
        "the registry gate rejected every one of the sweep's 2 models"
        in captured.out + captured.err
    )
    (version,) = connect().search_model_versions(f"name='{name}'")
    assert version.tags["gate"] == "rejected" and version.tags["gate_reason"] in captured.out
    assert connect().get_registered_model(name).aliases == {}
    # every run of the loop trained and was evaluated on the data step's version (data.dvc's)
    tracked = yaml.safe_load((workspace / "data.dvc").read_text())["outs"][0]["md5"]
    runs = connect().search_runs([connect().get_experiment_by_name(experiment).experiment_id])
    seeds = [r for r in runs if "seed_group_summary" not in r.data.tags]
    assert sorted(int(r.data.params["seed"]) for r in seeds) == [0, 1]
    for run in seeds:
        assert run.data.tags["data_version"] == tracked
        (dataset,) = run.inputs.dataset_inputs
        assert dataset.dataset.digest == tracked
    # the pipeline failed at the gate, after every run finished: the page and the seed group
    # are written all the same, from the store
    (summary,) = [r for r in runs if "seed_group_summary" in r.data.tags]
    top1 = [r.data.metrics["selected_test_top1_ema"] for r in seeds]
    assert summary.data.metrics["selected_test_top1_ema.mean"] == pytest.approx(np.mean(top1))
    assert summary.data.metrics["selected_test_top1_ema.std"] == pytest.approx(np.std(top1, ddof=1))
    assert {r.data.tags["mlflow.parentRunId"] for r in seeds} == {summary.info.run_id}
    page = (workspace / "results.md").read_text()
    row = f"| vanilla | 2 | {np.mean(top1):.2f} ± {np.std(top1, ddof=1):.2f} |"
    assert row in re.sub(" +", " ", page)
    assert "Every run finished: 1 method × 2 seeds." in page


def test_a_data_version_no_remote_holds_stops_the_pipeline_before_training(
    workspace, mlflow_http, capfd
):
    experiment, name = f"local-{uuid.uuid4().hex[:8]}", f"local-{uuid.uuid4().hex[:8]}"
    command = pipeline_command(workspace, experiment, name, "--data-version", "0" * 32)
    assert main(command) == 1
    out, err = capfd.readouterr()
    # the data step's own one line (no traceback), then the pipeline's
    assert (
        "error: data version 00000000000000000000000000000000.dir of fashion-mnist could not "
        "be pulled" in out + err
    )
    assert "Traceback" not in out + err and err.rstrip().splitlines()[-1].startswith("error:")
    assert not connect().search_registered_models(f"name='{name}'")
    assert connect().get_experiment_by_name(experiment) is None
    assert not (workspace / "runs" / "checkpoints").exists()


def test_a_diverging_run_fails_once_its_retries_at_once_and_the_last_line_names_why(
    workspace, mlflow_http, capfd
):
    experiment, name = f"local-{uuid.uuid4().hex[:8]}", f"local-{uuid.uuid4().hex[:8]}"
    command = pipeline_command(workspace, experiment, name, "--lr", "1e6", "--epochs", "1")
    assert main(command) == 1
    out, err = capfd.readouterr()
    # the train step diverged once; its two retries (kfp.local retries as Kubeflow does) failed
    # at once on its record, before MLflow or training
    assert (out + err).count("failing at once") == 2, (out + err)[-4000:]
    (run,) = connect().search_runs([connect().get_experiment_by_name(experiment).experiment_id])
    assert run.info.status == "FAILED"
    last = err.rstrip().splitlines()[-1]
    assert last.startswith("error: Pipeline") and "Inner task failed" in last
    assert "Its error: " in last and "Lower --lr (now 1e+06)" in last, last
    assert not connect().search_registered_models(f"name='{name}'")


def test_a_subset_larger_than_the_data_is_refused_before_any_step(workspace, mlflow_http, capfd):
    experiment, name = f"local-{uuid.uuid4().hex[:8]}", f"local-{uuid.uuid4().hex[:8]}"
    command = pipeline_command(workspace, experiment, name)
    command[command.index("--subset") + 1] = "70000"
    assert main(command) == 2
    _, err = capfd.readouterr()
    # Fashion-MNIST's 60000 training images, less the 100 of --val-size
    assert err.strip().splitlines() == [
        "error: subset 70000 is larger than the 59900 images of fashion-mnist/train left after "
        "the validation split; lower it or use 0 for all"
    ]
    assert (
        not (workspace / "runs").exists() and connect().get_experiment_by_name(experiment) is None
    )
