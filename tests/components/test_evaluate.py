"""The evaluate component: the selected networks' validation and test metrics, the confusion
matrix and the served model into the run."""

from __future__ import annotations

import mlflow
import numpy as np
import torch
from kfp import dsl

from adautomix.engine.saved_run import load_run
from adautomix.steps import run_link
from components.evaluate import evaluate


def test_the_run_gets_test_metrics_a_confusion_matrix_and_the_trained_model(
    prepared, trained, mlflow_http, tmp_path
):
    run_id, checkpoint = trained
    _, version, _ = prepared
    metrics = dsl.Metrics(name="metrics", uri=str(tmp_path / "metrics"))
    model_uri, score, metric, chance = evaluate.python_func(
        checkpoint=checkpoint,
        test_metrics=["top1", "loss"],
        metrics=metrics,
        mlflow_run=dsl.Markdown(name="mlflow_run", uri=str(tmp_path / "mlflow_run")),
    )
    logged = mlflow.get_run(run_id).data
    assert metric == "model_val_top1" and chance == 10.0
    assert score == metrics.metadata["model_val_top1"] == logged.metrics["model_val_top1"]
    assert set(metrics.metadata) == {
        f"selected_{split}_{name}{suffix}"
        for split in ("val", "test")
        for name in ("top1", "loss")
        for suffix in ("", "_ema")
    } | {"model_val_top1", "model_test_top1", "chance_top1"}
    # the EMA network is the one logged: it is scored on validation and reported on test
    assert score == metrics.metadata["selected_val_top1_ema"]
    assert metrics.metadata["model_test_top1"] == metrics.metadata["selected_test_top1_ema"]
    # the version the run trained on (its provenance), the data step's: no parameter restates it
    assert logged.tags["data_version"] == version
    artifacts = [a.path for a in mlflow.MlflowClient().list_artifacts(run_id, "eval")]
    assert artifacts == ["eval/confusion_matrix.png"]

    info = mlflow.models.get_model_info(model_uri)
    assert info.run_id == run_id
    assert tuple(info.signature.inputs.to_dict()[0]["tensor-spec"]["shape"]) == (-1, 1, 28, 28)
    assert info.saved_input_example_info is not None
    served = mlflow.pytorch.load_model(model_uri)
    run = load_run(checkpoint.path, device="cpu")
    images = torch.rand(3, 1, 28, 28)  # raw: the served model normalises
    normalised = (images - run.loader.mean[0]) / run.loader.std[0]
    with torch.inference_mode():
        np.testing.assert_allclose(
            served.eval()(images).numpy(),
            run.ema_network.eval()(normalised).numpy(),
            rtol=1e-5,
            atol=1e-5,
        )


def test_robustness_metrics_from_the_pipeline_parameter_reach_the_run(
    trained, mlflow_http, tmp_path
):
    run_id, checkpoint = trained
    metrics = dsl.Metrics(name="metrics", uri=str(tmp_path / "metrics"))
    evaluate.python_func(
        checkpoint=checkpoint,
        metrics=metrics,
        test_metrics=["ece", "occlusion:ratios=0+1"],
        mlflow_run=dsl.Markdown(name="mlflow_run", uri=str(tmp_path / "link")),
    )
    assert {
        "selected_test_ece_ema",
        "selected_test_ece_paper_ema",
        "selected_test_occlusion_top1_mean_ema",
        "selected_test_occlusion_top1_r1_ema",
    } <= set(metrics.metadata)
    logged = mlflow.get_run(run_id).data.metrics
    assert logged["selected_test_ece"] == metrics.metadata["selected_test_ece"]
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run_id, "eval")}
    assert {
        "eval/reliability.png",
        "eval/reliability_ema.png",
        "eval/occlusion_curve.png",
        "eval/occlusion_curve_ema.png",
    } <= artifacts


def test_the_run_page_links_to_the_mlflow_run_without_credentials(
    trained, mlflow_server, monkeypatch, tmp_path
):
    run_id, _ = trained
    experiment = mlflow.MlflowClient(mlflow_server).get_run(run_id).info.experiment_id
    host = mlflow_server.removeprefix("http://")
    # a server behind basic auth: the URI carries the credentials, the link must not
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://probe-user:probe-password@{host}/")
    assert run_link(run_id) == (
        f"[MLflow run {run_id}]({mlflow_server}/#/experiments/{experiment}/runs/{run_id})\n"
    )
    store = "postgresql://mlflow:probe-password@db.example:5432/mlflow"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    link = run_link(run_id)
    assert run_id in link and "db.example:5432/mlflow" in link and "probe-password" not in link
