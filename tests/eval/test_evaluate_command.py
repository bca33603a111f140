"""`adautomix evaluate RUN --metrics ...` on a real tiny run: every robustness metric of both
networks into the run's MLflow record, and bad input refused before anything is logged."""

from __future__ import annotations

import mlflow
import pytest

from adautomix.cli import main
from adautomix.config import RunConfig
from adautomix.data import load_manifest
from adautomix.engine.train import train
from tests.data.fixtures import make_fashion_mnist
from tests.helpers import small_run

TABLE3 = (
    "test_top1",
    "test_corruption_top1",
    "test_fgsm_error",
    "test_fgsm_error_paper",
    "test_ece",
    "test_ece_paper",
    "test_occlusion_top1_mean",
)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, mlflow_server):
    """One epoch of vanilla training on a 20-image Fashion-MNIST, tracked on the session's
    server (a fresh SQLite store would cost its migrations, seconds, per module)."""
    from adautomix.data import prepare

    root = tmp_path_factory.mktemp("evaluate")
    prepare("fashion-mnist", source=make_fashion_mnist(root / "raw"), data_root=root / "data")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
        patch.chdir(root)
        result = train(small_run(root / "data", root / "run", "robustness", batch_size=10))
    return root, result.run_id


def test_every_metric_of_both_networks_lands_in_the_run(run_dir, mlflow_http):
    root, run_id = run_dir
    # every metric, two corruptions only: a 28 px ResNet-18 pass is what costs here
    metrics = "top1,top5,loss,ece,fgsm,occlusion:ratios=0+0.5,corruption:corruptions=fog+snow"
    assert main(["evaluate", str(root / "run"), "--subset", "4", "--metrics", metrics]) == 0
    logged = mlflow.get_run(run_id)
    for name in TABLE3:
        assert name in logged.data.metrics and f"{name}_ema" in logged.data.metrics
    per_kind = [
        k
        for k in logged.data.metrics
        if k.startswith("test_corruption_top1_") and k != "test_corruption_top1_ema"
    ]
    assert len(per_kind) == 2 * (2 + 5)  # per corruption and per severity, both networks
    assert logged.info.status == "FINISHED"
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run_id, "eval")}
    assert {
        "eval/reliability.png",
        "eval/reliability_ema.png",
        "eval/occlusion_curve.png",
        "eval/corruption_bars.png",
        "eval/corruption.json",
    } <= artifacts
    corrupted = load_manifest("fashion-mnist-c", root / "data")  # generated once
    assert logged.data.tags["corruption_data_hash"] == corrupted.sha256


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--metrics", "top1,robustness"], "unknown metric 'robustness'; valid: top1, top5"),
        (["--metrics", "fgsm:epsilon=0"], "fgsm epsilon must be a finite number > 0"),
        (["--metrics", "fgsm:epsilon=-0.1"], "fgsm epsilon must be a finite number > 0"),
        (["--metrics", "corruption:severities=0+3"], "severity [0] outside 1-5"),
        (
            ["--metrics", "corruption:corruptions=fogg"],
            "unknown corruption(s) ['fogg']; valid: gaussian_noise",
        ),
    ],
)
def test_bad_metrics_fail_in_one_line_and_log_nothing(run_dir, mlflow_http, capsys, argv, message):
    root, run_id = run_dir
    before = mlflow.get_run(run_id).data.metrics
    assert main(["evaluate", str(root / "run"), *argv]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and message in error and error.count("\n") == 1
    assert mlflow.get_run(run_id).data.metrics == before


def test_a_folder_without_a_checkpoint_is_refused(tmp_path, capsys):
    RunConfig().save(tmp_path / "config.json")
    assert main(["evaluate", str(tmp_path), "--metrics", "top1"]) == 2
    assert "holds no checkpoint.pt" in capsys.readouterr().err
