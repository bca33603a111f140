"""The evaluate component: test metrics, confusion matrix and the final model into the run."""

from __future__ import annotations

import mlflow
import numpy as np
import torch
from kfp import dsl

from adautomix.engine.saved_run import load_run
from components.evaluate import evaluate


def test_the_run_gets_test_metrics_a_confusion_matrix_and_the_trained_model(trained, mlflow_http,
                                                                           tmp_path):
    run_id, checkpoint = trained
    metrics = dsl.Metrics(name="metrics", uri=str(tmp_path / "metrics"))
    model_uri, score = evaluate.python_func(checkpoint=checkpoint, data_version="v1",
                                            test_metrics=["top1", "loss"], metrics=metrics)
    logged = mlflow.get_run(run_id).data
    assert score == metrics.metadata["model_top1"] == logged.metrics["model_top1"]
    assert set(metrics.metadata) == {"test_top1", "test_loss", "test_top1_ema", "test_loss_ema",
                                     "model_top1"}
    assert score == metrics.metadata["test_top1_ema"]        # the EMA network is the one logged
    assert logged.tags["data_version"] == "v1"
    artifacts = [a.path for a in mlflow.MlflowClient().list_artifacts(run_id, "eval")]
    assert artifacts == ["eval/confusion_matrix.png"]

    info = mlflow.models.get_model_info(model_uri)
    assert info.run_id == run_id
    assert tuple(info.signature.inputs.to_dict()[0]["tensor-spec"]["shape"]) == (-1, 1, 28, 28)
    assert info.saved_input_example_info is not None
    served = mlflow.pytorch.load_model(model_uri)
    trained_ema = load_run(checkpoint.path, device="cpu").ema_network
    images = torch.rand(3, 1, 28, 28)
    with torch.inference_mode():
        np.testing.assert_allclose(served.eval()(images).numpy(),
                                   trained_ema.eval()(images).numpy(), rtol=1e-5, atol=1e-5)


def test_robustness_metrics_from_the_pipeline_parameter_reach_the_run(trained, mlflow_http,
                                                                     tmp_path):
    run_id, checkpoint = trained
    metrics = dsl.Metrics(name="metrics", uri=str(tmp_path / "metrics"))
    evaluate.python_func(checkpoint=checkpoint, data_version="v1", metrics=metrics,
                         test_metrics=["ece", "occlusion:ratios=0+1"])
    assert {"test_ece_ema", "test_ece_paper_ema", "test_occlusion_top1_mean_ema",
            "test_occlusion_top1_r1_ema"} <= set(metrics.metadata)
    logged = mlflow.get_run(run_id).data.metrics
    assert logged["test_ece"] == metrics.metadata["test_ece"]
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run_id, "eval")}
    assert {"eval/reliability.png", "eval/reliability_ema.png", "eval/occlusion_curve.png",
            "eval/occlusion_curve_ema.png"} <= artifacts
