"""End-to-end behaviour of the training loop on real Fashion-MNIST: it learns, it records what a
user compares runs by in MLflow, and a run killed at any point resumes to the same weights."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from mlflow.tracking import MlflowClient

from adautomix.config import RunConfig
from adautomix.data import load_manifest
from adautomix.engine.checkpoint import load_checkpoint
from adautomix.engine.train import train

pytestmark = pytest.mark.slow


def test_one_epoch_learns_and_mlflow_records_the_run(fmnist_root, mlflow_sqlite, tmp_path):
    # 3000 images in batches of 25: 120 steps, annealed per step so the last weights are settled;
    # width 16 learns as much in so few steps (46 % test) at a quarter of the full width's time
    config = RunConfig(dataset="fashion-mnist", model="resnet18", model_width=16,
                       method="vanilla", epochs=1,
                       subset=3000, test_subset=500, val_size=300, batch_size=25, lr=0.05,
                       ema_decay=0.9, lr_schedule_by="step",
                       data_root=str(fmnist_root), output_dir=str(tmp_path / "run"),
                       experiment="test-train", progress=False)
    result = train(config)
    assert result.metrics["test_top1"] > 35.0          # chance is 10%
    assert result.metrics["test_top1_ema"] > 35.0
    assert result.metrics["val_top1_ema"] > 35.0

    client = MlflowClient(mlflow_sqlite)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["method"] == "vanilla" and run.data.params["subset"] == "3000"
    assert set(config.flat()) <= set(run.data.params)
    manifest = load_manifest("fashion-mnist", fmnist_root)
    assert run.data.params["recipe.mean"] == str(list(manifest.mean))     # resolved, not []
    assert run.data.params["recipe.train_crop"] == "pad"
    assert run.info.run_name == "vanilla-resnet18-fashion-mnist-seed0"
    (dataset,) = run.inputs.dataset_inputs
    assert dataset.dataset.name == "fashion-mnist" and dataset.dataset.digest == manifest.sha256[:36]
    tags = run.data.tags
    for key in ("method", "model", "dataset", "seed", "git_commit", "data_hash"):
        assert tags[key], key
    assert tags["data_hash"] == load_manifest("fashion-mnist", fmnist_root).sha256
    for key in ("train_loss", "val_top1", "val_top1_ema", "val_top5", "images_per_sec",
                "test_top1", "test_top1_ema", "test_top1_ema_median10", "selected_epoch"):
        assert key in run.data.metrics, key
    assert [m.step for m in client.get_metric_history(result.run_id, "val_top1")] == [1]
    assert (tmp_path / "run" / "selected.pt").exists()
    artifacts = {a.path for a in client.list_artifacts(result.run_id)}
    assert {"config.json", "samples", "curves"} <= artifacts
    assert client.list_artifacts(result.run_id, "samples")[0].path.endswith(".png")
    assert RunConfig.load(tmp_path / "run" / "config.json") == config


def _train_command(config_path):
    return [sys.executable, "-m", "adautomix.cli", "train", "--config", str(config_path)]


def test_killed_run_resumes_to_identical_weights(fmnist_root, mlflow_sqlite, tmp_path):
    common = dict(dataset="fashion-mnist", model="resnet18", method="mixup", epochs=3, subset=200,
                  test_subset=100, batch_size=50, lr=0.05, data_root=str(fmnist_root),
                  deterministic=True, experiment="test-resume", progress=False, log_images_every=0)
    reference = train(RunConfig(**common, output_dir=str(tmp_path / "reference")))

    config = RunConfig(**common, output_dir=str(tmp_path / "killed"))
    config.save(tmp_path / "killed.json")
    proc = subprocess.Popen(_train_command(tmp_path / "killed.json"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "2"})
    deadline = time.time() + 240
    while not (tmp_path / "killed" / "checkpoint.pt").exists():   # kill it during epoch 2
        assert proc.poll() is None and time.time() < deadline, "training process ended early"
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    interrupted = load_checkpoint(tmp_path / "killed")
    assert interrupted["epoch"] < 3

    resumed = train(config, resume=True)
    final = load_checkpoint(tmp_path / "killed")
    expected = load_checkpoint(tmp_path / "reference")
    for key, value in expected["model"].items():
        assert torch.equal(final["model"][key], value), key
    assert resumed.run_id == interrupted["run_id"]            # the same MLflow run continues
    steps = [m.step for m in MlflowClient(mlflow_sqlite).get_metric_history(resumed.run_id, "test_top1")]
    assert sorted(set(steps)) == [1, 2, 3]
    assert resumed.metrics["test_top1"] == pytest.approx(reference.metrics["test_top1"])
