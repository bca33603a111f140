"""The paper-style comparison: grouping, the table, the chart, and reading runs from MLflow."""

from __future__ import annotations

import uuid

import mlflow
import pytest

from adautomix.cli import main
from adautomix.compare import bar_chart, collect, compare, format_table
from adautomix.tracking import TrackingError
from tests.tracking_helpers import experiment_id


def run(method: str, seed: int, top1: float, dataset: str = "cifar100", model: str = "resnet18",
        **metrics: float) -> dict:
    return {"tags": {"method": method, "dataset": dataset, "model": model, "seed": str(seed)},
            "metrics": {"val_top1_ema_median10": top1, "val_top1_median10": top1 - 5, **metrics}}


RUNS = [
    run("mixup", 0, 78.0), run("mixup", 1, 79.0), run("adautomix", 0, 81.0),
    run("adautomix", 0, 95.0, dataset="fashion-mnist"),
    {"tags": {"method": "vanilla", "dataset": "cifar100", "model": "resnet18"},
     "metrics": {"val_top1_median10": 76.0}},                                  # no EMA network
    {"tags": {"method": "cutmix"}, "metrics": {"val_top1_ema_median10": 1.0}},  # untagged: skipped
]


def test_cells_are_the_seed_mean_of_the_ema_median_grouped_by_method_and_dataset_model():
    comparison = collect(RUNS)
    assert comparison.top1["mixup", "cifar100/resnet18"] == [78.0, 79.0]
    assert comparison.top1["vanilla", "cifar100/resnet18"] == [76.0]
    assert comparison.methods == ["vanilla", "mixup", "adautomix"]      # the paper's order
    assert comparison.columns == ["fashion-mnist/resnet18", "cifar100/resnet18"]
    table = format_table(comparison)
    rows = {line.split()[0]: line for line in table.splitlines()[3:]}
    assert "78.50 ± 0.71" in rows["mixup"] and "81.00" in rows["adautomix"]
    assert rows["vanilla"].split()[1] == "-"                            # no fashion-mnist run


def test_robustness_tables_appear_only_when_runs_logged_robustness_metrics():
    assert "robustness" not in format_table(collect(RUNS))
    assert "robustness" not in format_table(collect([run("mixup", 0, 78.0, test_top1=70.0)]))
    runs = [run("mixup", 0, 78.0, test_top1_ema=77.0, test_fgsm_error_ema=60.0,
                test_fgsm_error=70.0, test_ece_paper_ema=3.0, test_corruption_top1=50.0,
                test_corruption_top1_fog=40.0, test_occlusion_top1_r0=77.0, test_loss=1.0)]
    table = format_table(collect(runs))
    assert "robustness, cifar100/resnet18" in table
    header = table.split("robustness, cifar100/resnet18")[1].splitlines()[1]
    # Table 3's order, clean top-1 first; breakdowns (per corruption, per ratio) left out
    assert header.split() == ["method", "top1", "corruption_top1", "fgsm_error", "ece_paper"]
    assert "60.00" in table and "70.00" not in table                    # the EMA network's value


def test_the_bar_chart_is_a_png(tmp_path):
    path = bar_chart(collect(RUNS), tmp_path / "chart.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def log_run(experiment: str, method: str, seed: int, history: list[float], finish: bool = True):
    tags = {"method": method, "dataset": "fashion-mnist", "model": "resnet18", "seed": str(seed)}
    with mlflow.start_run(experiment_id=experiment_id(experiment), tags=tags):
        for epoch, top1 in enumerate(history, 1):
            mlflow.log_metric("val_top1_ema", top1, step=epoch)
        mlflow.log_metric("val_top1_ema_median10", sorted(history[-10:])[len(history[-10:]) // 2])
        if not finish:
            mlflow.end_run("KILLED")


def test_compare_reads_finished_runs_from_the_server(mlflow_http, tmp_path, capsys):
    experiment = f"compare-{uuid.uuid4().hex[:8]}"
    log_run(experiment, "mixup", 0, [50.0, 60.0, 70.0])
    log_run(experiment, "adautomix", 0, [55.0, 65.0, 75.0])
    log_run(experiment, "cutmix", 0, [99.0], finish=False)               # killed: left out
    chart = tmp_path / "chart.png"
    assert main(["compare", "--experiment", experiment, "--chart", str(chart)]) == 0
    out = capsys.readouterr().out
    assert "fashion-mnist/resnet18" in out and "cutmix" not in out
    table = out.split("experiment " + experiment)[1].splitlines()[3:5]
    assert [row.split() for row in table] == [["mixup", "60.00"], ["adautomix", "65.00"]]
    assert chart.exists()


def test_an_unknown_experiment_is_named(mlflow_http):
    with pytest.raises(TrackingError, match="no-such-experiment"):
        compare("no-such-experiment")
