"""What a user sees of the way a run computes: `adautomix train` names its device, precision,
loader kind and step kind in its log and in the MLflow run's params (engine.*), and a GPU run
records MLflow's system metrics (GPU utilisation and memory) while a CPU run does not."""

from __future__ import annotations

import logging
import math

import pytest
import torch
from mlflow.tracking import MlflowClient

from adautomix.engine.train import train
from tests.helpers import small_run

pytestmark = pytest.mark.slow


# a run of two steps of a quarter-width ResNet-18, on top of tests.helpers.small_run
SMALL = dict(
    model_width=4,
    method="mixup",
    subset=100,
    test_subset=100,
    batch_size=50,
    eval_batch_size=100,
    loader="auto",
)


def test_a_bf16_cpu_run_names_its_path_in_the_log_and_the_params(
    fmnist_root, mlflow_sqlite, tmp_path, caplog
):
    config = small_run(
        fmnist_root, tmp_path / "run", "test-path", **SMALL, precision="bf16", device="cpu"
    )
    with caplog.at_level(logging.INFO, logger="adautomix.train"):
        result = train(config)
    assert math.isfinite(result.history[-1]["train_loss"])
    assert 0 <= result.metrics["test_top1"] <= 100
    threads = torch.get_num_threads()
    assert (
        f"training path: device cpu ({threads} threads), precision bf16, loader memory, step eager"
    ) in caplog.text
    run = MlflowClient(mlflow_sqlite).get_run(result.run_id)
    assert {k: v for k, v in run.data.params.items() if k.startswith("engine.")} == {
        "engine.device": f"cpu ({threads} threads)",
        "engine.precision": "bf16",
        "engine.loader": "memory",
        "engine.step": "eager",
    }
    assert run.data.params["precision"] == "bf16" and run.data.params["eval_batch_size"] == "100"
    assert not [k for k in run.data.metrics if k.startswith("system/")]


@pytest.mark.gpu
def test_a_gpu_run_records_system_metrics(fmnist_root, mlflow_sqlite, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.2")
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING", "1")
    result = train(
        small_run(
            fmnist_root, tmp_path / "run", "test-path", **SMALL, precision="bf16", device="cuda"
        )
    )
    run = MlflowClient(mlflow_sqlite).get_run(result.run_id)
    assert run.data.params["engine.device"].startswith("cuda")
    metrics = run.data.metrics
    assert "system/gpu_0_utilization_percentage" in metrics, sorted(metrics)
    assert metrics["system/gpu_0_memory_usage_megabytes"] > 0
