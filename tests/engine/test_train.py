"""End-to-end behaviour of the training loop on real Fashion-MNIST: it learns, it records what a
user compares runs by in MLflow, and a run stopped in the middle of an epoch resumes to the same
weights."""

import os
import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

from adautomix.config import RunConfig
from adautomix.data import load_manifest
from adautomix.engine.checkpoint import load_checkpoint
from adautomix.engine.train import train
from tests.helpers import assert_same, small_run

pytestmark = pytest.mark.slow


def test_one_epoch_learns_and_mlflow_records_the_run(fmnist_root, mlflow_sqlite, tmp_path):
    # 3000 images in batches of 25: 120 steps, annealed per step so the last weights are settled;
    # width 16 learns as much in so few steps (46 % test) at a quarter of the full width's time
    config = small_run(
        fmnist_root,
        tmp_path / "run",
        "test-train",
        model_width=16,
        method="vanilla",
        subset=3000,
        test_subset=500,
        val_size=300,
        batch_size=25,
        lr=0.05,
        ema_decay=0.9,
        lr_schedule_by="step",
        log_images_every=1,  # the sample grids are part of what MLflow records
    )
    result = train(config)
    assert result.metrics["test_top1"] > 35.0  # chance is 10%
    assert result.metrics["test_top1_ema"] > 35.0
    assert result.metrics["val_top1_ema"] > 35.0

    client = MlflowClient(mlflow_sqlite)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["method"] == "vanilla" and run.data.params["subset"] == "3000"
    assert set(config.flat()) <= set(run.data.params)
    manifest = load_manifest("fashion-mnist", fmnist_root)
    assert run.data.params["recipe.mean"] == str(list(manifest.mean))  # resolved, not []
    assert run.data.params["recipe.train_crop"] == "pad"
    assert run.info.run_name == "vanilla-resnet18-fashion-mnist-seed0"
    (dataset,) = run.inputs.dataset_inputs
    assert (
        dataset.dataset.name == "fashion-mnist" and dataset.dataset.digest == manifest.sha256[:36]
    )
    tags = run.data.tags
    for key in ("method", "model", "dataset", "seed", "git_commit", "data_hash"):
        assert tags[key], key
    assert tags["data_hash"] == load_manifest("fashion-mnist", fmnist_root).sha256
    for key in (
        "train_loss",
        "val_top1",
        "val_top1_ema",
        "val_top5",
        "images_per_sec",
        "test_top1",
        "test_top1_ema",
        "test_top1_ema_median10",
        "selected_epoch",
    ):
        assert key in run.data.metrics, key
    assert [m.step for m in client.get_metric_history(result.run_id, "val_top1")] == [1]
    assert (tmp_path / "run" / "selected.pt").exists()
    artifacts = {a.path for a in client.list_artifacts(result.run_id)}
    assert {"config.json", "samples", "curves"} <= artifacts
    assert client.list_artifacts(result.run_id, "samples")[0].path.endswith(".png")
    assert RunConfig.load(tmp_path / "run" / "config.json") == config


# `adautomix train` that sends itself SIGTERM, as Kubernetes does to a preempted pod, right after
# a chosen optimiser step
SIGTERMED_TRAIN = """
import os, signal, sys
import adautomix.engine.train as engine
from adautomix.cli import main

stop_at, build_method = int(sys.argv[2]), engine.create_method

def create_method(*args, **kwargs):
    method = build_method(*args, **kwargs)
    after = method.after_optimizer_step
    def after_optimizer_step(model, step, total_steps):
        after(model, step, total_steps)
        if step == stop_at:
            os.kill(os.getpid(), signal.SIGTERM)
    method.after_optimizer_step = after_optimizer_step
    return method

engine.create_method = create_method
sys.exit(main(["train", "--config", sys.argv[1]]))
"""


def test_a_run_stopped_by_sigterm_mid_epoch_resumes_to_identical_weights(
    fmnist_root, mlflow_sqlite, tmp_path
):
    common = dict(
        method="mixup",
        model_width=16,  # what is proven is the resume, not the network: a small one trains fast
        epochs=2,
        subset=200,
        test_subset=100,
        batch_size=50,
        lr=0.05,
        deterministic=True,
    )
    reference = train(small_run(fmnist_root, tmp_path / "reference", "test-resume", **common))

    config = small_run(fmnist_root, tmp_path / "stopped", "test-resume", **common)
    config.save(tmp_path / "stopped.json")
    stop_after = 5  # the second step of epoch 2 (4 steps an epoch, counted from 0)
    child = subprocess.run(
        [sys.executable, "-c", SIGTERMED_TRAIN, str(tmp_path / "stopped.json"), str(stop_after)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "2"},
    )
    assert child.returncode == 1, child.stderr[-3000:]
    assert child.stderr.splitlines()[-1].startswith(
        "error: stopped by SIGTERM at step 6 (epoch 2, batch 2 of 4) after checkpointing it"
    )
    interrupted = load_checkpoint(tmp_path / "stopped")
    assert (interrupted["epoch"], interrupted["epoch_step"], interrupted["step"]) == (1, 2, 6)
    client = MlflowClient(mlflow_sqlite)
    assert client.get_run(interrupted["run_id"]).info.status == "KILLED"

    resumed = train(config, resume=True)
    final = load_checkpoint(tmp_path / "stopped")
    expected = load_checkpoint(tmp_path / "reference")
    for key in ("model", "ema", "optimizer", "scaler", "rng", "epoch", "step"):
        assert_same(final[key], expected[key], key)
    assert resumed.run_id == interrupted["run_id"]  # the same MLflow run continues
    assert client.get_run(resumed.run_id).info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(resumed.run_id, "test_top1")]
    assert sorted(steps) == [1, 2]  # each epoch logged once
    assert resumed.metrics == reference.metrics
    assert [h["train_loss"] for h in resumed.history] == [
        h["train_loss"] for h in reference.history
    ]
