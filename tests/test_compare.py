"""The paper-style comparison: settings, seed de-duplication, Δ to Vanilla, every export format and
the chart, on runs logged to a real MLflow server the way training logs them (the whole config as
params). Expected numbers are worked out by hand from the logged values."""

from __future__ import annotations

import csv
import io
import uuid

import pytest
from mlflow.entities import Metric, Param

from adautomix.cli import main
from adautomix.compare import (
    CompareError,
    chart_figure,
    check_comparable,
    collect,
    compare,
    describe,
    format_comparison,
)
from adautomix.config import RunConfig
from adautomix.tracking import TrackingError, connect
from tests.tracking_helpers import experiment_id

HEADLINE = "test_top1_ema_median10"


def log_run(
    experiment: str,
    method: str,
    seed: int,
    top1: float,
    start: int,
    epochs: int = 2,
    **metrics: float,
) -> None:
    """A finished run as Tracker and evaluate_step leave it: params, tags, metrics. The start
    time is explicit, so which run of a seed is the latest does not depend on the clock."""
    config = RunConfig(
        method=method,
        seed=seed,
        epochs=epochs,
        experiment=experiment,
        output_dir=f"runs/{method}-{seed}-{start}",
    )
    client = connect()
    run = client.create_run(
        experiment_id(experiment),
        start_time=start,
        tags={
            "method": method,
            "dataset": config.dataset,
            "model": config.model,
            "seed": str(seed),
            "data_hash": "d" * 64,
        },
    )
    rid = run.info.run_id
    # the method's resolved options, as training logs them beside the config: a row's, not a
    # setting's, or Vanilla (which has none) would never meet MixUp
    options = {"method.alpha": 1.0} if method == "mixup" else {}
    params = {**config.flat(), **options}
    client.log_batch(
        rid,
        params=[Param(k, str(v)) for k, v in params.items()],
        metrics=[Metric(k, v, start, 0) for k, v in {HEADLINE: top1, **metrics}.items()],
    )
    client.set_terminated(rid, "FINISHED")


@pytest.fixture(scope="module")
def logged_sweep(mlflow_server):
    """Vanilla and MixUp at 2 epochs over seeds, one seed of MixUp run twice, and a 1-epoch
    debug run that must not pool with them; logged once for the tests that read it."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MLFLOW_TRACKING_URI", mlflow_server)
        return log_sweep(f"compare-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def sweep(logged_sweep, mlflow_http):
    return logged_sweep


def log_sweep(experiment: str) -> str:
    log_run(experiment, "vanilla", 0, 78.0, start=1000, test_fgsm_error_ema=60.0)
    log_run(experiment, "vanilla", 1, 79.0, start=1001, test_fgsm_error_ema=62.0)
    log_run(experiment, "mixup", 0, 10.0, start=1002)  # superseded below
    log_run(
        experiment, "mixup", 0, 80.0, start=1010, test_fgsm_error_ema=50.0, test_fgsm_error=70.0
    )  # the online one: unused
    log_run(experiment, "mixup", 1, 82.0, start=1011, test_fgsm_error_ema=52.0)
    log_run(
        experiment,
        "mixup",
        2,
        84.0,
        start=1012,
        selected_test_fgsm_error_ema=54.0,
        test_fgsm_error_ema=0.0,
    )  # the evaluate step's measure wins
    log_run(experiment, "mixup", 0, 99.0, start=1020, epochs=1)  # a debug run
    return experiment


def rows_of(markdown: str, title: str) -> dict[str, list[str]]:
    """The body of the markdown table under **title**, as {method: cells}."""
    lines = markdown.split(f"**{title}**")[1].strip().splitlines()
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    return {r[0]: r[1:] for r in rows[: next((i for i, r in enumerate(rows) if not r[0]), None)]}


def test_runs_pool_by_setting_latest_run_per_seed_with_delta_to_vanilla(sweep):
    out = compare(sweep)
    two = rows_of(out, "fashion-mnist/resnet18 (epochs=2)")
    # vanilla: 78, 79 -> 78.50 ± 0.71; mixup: 80, 82, 84 (not 10: superseded) -> 82.00 ± 2.00
    assert two["vanilla"][:3] == ["2", "78.50 ± 0.71", "-"]
    assert two["mixup"][:3] == ["3", "**82.00 ± 2.00**", "+3.50"]
    # FGSM error of the EMA network beside it, lower is better: 61 ± 1.41 against 52 ± 2
    assert two["vanilla"][3] == "61.00 ± 1.41" and two["mixup"][3] == "**52.00 ± 2.00**"
    one = rows_of(out, "fashion-mnist/resnet18 (epochs=1)")
    assert one == {"mixup": ["1", "99.00", "-"]}
    assert "median of the last 2 epochs" in out and "median of the last 1 epoch " in out
    assert "1 older run(s) of a seed" in out


def test_every_export_format_carries_the_same_numbers(sweep):
    rows = list(csv.DictReader(io.StringIO(compare(sweep, fmt="csv"))))
    headline = {(r["setting"], r["method"]): r for r in rows if r["metric"] == HEADLINE}
    mixup = headline["fashion-mnist/resnet18 (epochs=2)", "mixup"]
    assert (
        mixup["seeds"],
        mixup["mean"],
        mixup["std"],
        mixup["delta_vs_vanilla"],
        mixup["best"],
    ) == ("3", "82.0000", "2.0000", "3.5000", "1")
    assert headline["fashion-mnist/resnet18 (epochs=1)", "mixup"]["std"] == ""
    assert {r["metric"] for r in rows} == {HEADLINE, "fgsm_error"}

    latex = compare(sweep, fmt="latex")
    assert latex.count(r"\begin{tabular}") == 2 and r"\toprule" in latex
    assert (
        r"mixup & 3 & $\mathbf{82.00 \pm 2.00}$ & $+3.50$ & $\mathbf{52.00 \pm 2.00}$ \\" in latex
    )
    assert r"test\_top1\_ema" in latex and "_ema" not in latex.replace(r"\_ema", "")


def test_the_cli_writes_the_format_and_the_chart(sweep, tmp_path, capsys):
    chart = tmp_path / "chart.png"
    assert main(["compare", "--experiment", sweep, "--chart", str(chart), "--format", "csv"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("setting,method,metric,seeds,mean,std,delta_vs_vanilla,best")
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_robustness_metrics_can_be_named(sweep):
    out = compare(sweep, robustness=["fgsm_error", "ece"])  # ece: logged by no run
    header = out.split("**fashion-mnist/resnet18 (epochs=2)**")[1].strip().splitlines()[0]
    assert [c.strip() for c in header.strip("|").split("|")][-1] == "fgsm_error"
    assert "fgsm_error" not in compare(sweep, robustness=[])


def test_runs_that_share_no_config_are_refused_with_what_tells_them_apart(mlflow_http, capsys):
    experiment = f"compare-{uuid.uuid4().hex[:8]}"
    log_run(experiment, "vanilla", 0, 78.0, start=1000, epochs=1)
    log_run(experiment, "mixup", 0, 80.0, start=1001, epochs=3)
    assert main(["compare", "--experiment", experiment]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "share no common config" in err and "epochs" in err and "--ignore" in err
    # pooling over the field that differs is the user's call
    assert main(["compare", "--experiment", experiment, "--ignore", "epochs", "--no-chart"]) == 0
    assert "+2.00" in capsys.readouterr().out


def test_table_3_sets_clean_top1_first_and_leaves_the_breakdowns_out():
    metrics = {
        HEADLINE: 78.0,
        "test_top1_ema": 77.0,
        "test_top1": 75.0,
        "test_loss": 1.0,
        "test_fgsm_error_ema": 60.0,
        "test_fgsm_error": 70.0,
        "test_ece_paper_ema": 3.0,
        "test_corruption_top1": 50.0,
        "test_corruption_top1_fog": 40.0,
        "test_occlusion_top1_r0": 77.0,
    }
    plain = {HEADLINE: 70.0, "test_top1": 69.0}  # no robustness: no columns
    runs = [
        {"params": {"method": "mixup", "seed": "0"}, "metrics": metrics},
        {"params": {"method": "vanilla", "seed": "0"}, "metrics": plain},
    ]
    table = format_comparison(collect(runs, "x"))
    header = [
        c.strip() for c in table.split("**?/?**")[1].strip().splitlines()[0].strip("|").split("|")
    ]
    assert header[4:] == ["clean top1", "corruption_top1", "fgsm_error", "ece_paper"]
    row = rows_of(table, "?/?")["mixup"]
    assert row[3:] == ["77.00", "50.00", "60.00", "3.00"]  # the EMA network's values
    assert rows_of(table, "?/?")["vanilla"][3:] == ["-", "-", "-", "-"]
    assert "robustness" not in format_comparison(collect(runs[1:], "x")).lower()
    assert "clean top1" not in format_comparison(collect(runs[1:], "x"))


def test_one_method_over_several_settings_is_a_budget_study_not_an_error():
    runs = [
        {
            "params": {
                "method": "mixup",
                "seed": "0",
                "epochs": str(e),
                "dataset": "cifar100",
                "model": "resnet18",
            },
            "metrics": {HEADLINE: float(e)},
        }
        for e in (1, 5)
    ]
    comparison = collect(runs, "budget")
    check_comparable(comparison)
    assert [s.label for s in comparison.settings] == [
        "cifar100/resnet18 (epochs=1)",
        "cifar100/resnet18 (epochs=5)",
    ]


def test_an_empty_experiment_and_an_unknown_one_are_named(mlflow_http):
    with pytest.raises(CompareError, match="no finished runs.*--metric"):
        check_comparable(collect([{"tags": {"method": "mixup"}, "metrics": {}}], "empty"))
    with pytest.raises(TrackingError, match="no-such-experiment"):
        compare("no-such-experiment")


def test_the_headline_falls_back_to_the_online_network_and_says_so():
    runs = [
        {"params": {"method": "vanilla", "seed": "0"}, "metrics": {"test_top1_median10": 70.0}},
        {"params": {"method": "mixup", "seed": "0"}, "metrics": {HEADLINE: 75.0}},
    ]
    comparison = collect(runs, "x")
    assert comparison.metric == HEADLINE
    assert (
        "headline: test_top1_ema_median10; test_top1_median10 for runs without it"
        in format_comparison(comparison)
    )


def test_a_method_run_with_different_options_gets_a_row_per_variant():
    runs = [
        {
            "params": {"method": "mixup", "seed": "0", "method_args.alpha": a},
            "metrics": {HEADLINE: float(i)},
        }
        for i, a in enumerate(("0.2", "1.0"))
    ]
    assert collect(runs, "x").rows == ["mixup (alpha=0.2)", "mixup (alpha=1.0)"]


def test_the_label_says_how_many_epochs_the_median_covers():
    assert describe(HEADLINE, 800) == "test_top1_ema, median of the last 10 epochs"
    assert describe(HEADLINE, 3) == "test_top1_ema, median of the last 3 epochs"
    assert describe("test_top1", 3) == "test_top1"


def test_the_chart_zooms_to_the_data_with_error_bars_and_the_legend_outside():
    runs = [
        {"params": {"method": m, "seed": str(s), "epochs": "2"}, "metrics": {HEADLINE: v}}
        for m, values in (("vanilla", (90.0, 91.0)), ("adautomix", (92.0, 94.0)))
        for s, v in enumerate(values)
    ]
    fig = chart_figure(collect(runs, "x"))
    (ax,) = fig.axes
    low, high = ax.get_ylim()
    assert 85.0 < low < 89.3 and 95.4 < high < 100.0  # data spans 89.79 .. 94.41
    assert len(ax.containers) == 2  # the bars and one set of error bars
    fig.canvas.draw()
    legend = fig.legends[0].get_window_extent()
    assert legend.x0 >= ax.get_window_extent().x1  # right of the panel, not on the bars
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [
        "vanilla",
        "adautomix",
        "vanilla mean",
    ]
    assert "median of the last 2 epochs" in ax.get_ylabel()
