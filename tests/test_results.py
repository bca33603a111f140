"""The seed groups' summary runs and the results page, from runs logged to real MLflow stores
(SQLite and a real `mlflow server`) the way training and the evaluate step log them. Expected
figures are computed here with numpy and the t distribution, not with the code under test."""

from __future__ import annotations

import csv
import io
import math
import re
import uuid

import numpy as np
import pytest
from mlflow.entities import Metric, Param
from scipy import stats

from adautomix.cli import main
from adautomix.compare import CompareError
from adautomix.config import RunConfig
from adautomix.results import welch_p, write_results
from adautomix.seed_groups import GROUP_TAG, MISSING_TAG, PARENT_TAG, summarize
from adautomix.tracking import SUMMARY_TAG, connect, experiment_runs
from tests.tracking_helpers import experiment_id

EMA, ONLINE = "selected_test_top1_ema", "selected_test_top1"
# method -> seed -> (EMA top-1, online top-1)
TOP1 = {
    "vanilla": {0: (80.0, 79.0), 1: (81.0, 79.5), 2: (80.5, 80.5)},
    "mixup": {0: (82.0, 81.0), 1: (82.5, 81.2), 2: (83.1, 81.1)},
    "adautomix": {0: (81.0, 80.0), 1: (80.0, 79.0)},  # seed 2 fails below
}


def log_run(
    experiment: str,
    method: str,
    seed: int,
    top1: tuple[float, float] | None,
    start: int,
    epochs: int = 2,
    status: str = "FINISHED",
    reason: str = "",
) -> str:
    """A run as Tracker, the engine and the evaluate step leave it: the config as params, the
    per-epoch curves and timings, the selected networks' test figures, the step times."""
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
            "git_commit": "c" * 40,
            "machine": "a test machine",
            "eval_test_metrics": "top1,fgsm:images=100",
            **({"failure_reason": reason} if reason else {}),
        },
    )
    rid = run.info.run_id
    metrics = []
    for epoch in range(1, epochs + 1):
        metrics += [
            Metric("train_loss", 2.0 / epoch + seed / 10, start, epoch),
            Metric("test_top1_ema", 50.0 + 10 * epoch + seed, start, epoch),
            Metric("train_seconds", 3.0, start, epoch),
            Metric("eval_seconds", 1.0, start, epoch),
        ]
    if top1 is not None:
        ema, online = top1
        metrics += [
            Metric(EMA, ema, start, epochs),
            Metric(ONLINE, online, start, epochs),
            Metric("selected_test_fgsm_error_ema", 100.0 - ema, start, epochs),
            Metric("test_top1_ema_median10", ema - 1.0, start, epochs),
            Metric("step_seconds_train", 20.0, start, epochs),
            Metric("step_seconds_evaluate", 10.0, start, epochs),
            Metric("evaluate_seconds", 4.0, start, epochs),
        ]
    options = {"method.alpha": "1.0"} if method == "mixup" else {}
    client.log_batch(
        rid,
        params=[Param(k, str(v)) for k, v in {**config.flat(), **options}.items()],
        metrics=metrics,
    )
    client.set_terminated(rid, status, end_time=start + 60_000)
    return rid


def log_sweep(experiment: str, start: int = 1_700_000_000_000) -> dict[tuple[str, int], str]:
    ids = {}
    for method, seeds in TOP1.items():
        for seed, top1 in seeds.items():
            ids[method, seed] = log_run(experiment, method, seed, top1, start + len(ids) * 1000)
    ids["adautomix", 2] = log_run(
        experiment,
        "adautomix",
        2,
        None,
        start + 50_000,
        status="FAILED",
        reason="LossGuard: the training loss was NaN at step 7",
    )
    return ids


@pytest.fixture(params=["sqlite", "server"])
def store(request, tmp_path, monkeypatch):
    if request.param == "sqlite":
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    else:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", request.getfixturevalue("mlflow_server"))
    return request.param


def summaries(experiment: str) -> dict[str, object]:
    client = connect()
    found = client.search_runs(
        [experiment_id(experiment)], f"tags.{SUMMARY_TAG} = 'true'", max_results=100
    )
    return {run.data.tags["method"]: run for run in found}


def test_each_method_gets_a_summary_run_with_mean_std_n_and_its_seed_runs_nested(store):
    experiment = f"groups-{uuid.uuid4().hex[:8]}"
    ids = log_sweep(experiment)
    summarize(experiment, expected_seeds=[0, 1, 2])
    found = summaries(experiment)
    assert set(found) == {"vanilla", "mixup", "adautomix"}
    for method, seeds in TOP1.items():
        metrics = found[method].data.metrics
        values = np.array([top1[0] for top1 in seeds.values()])
        assert metrics[f"{EMA}.mean"] == pytest.approx(values.mean())
        assert metrics[f"{EMA}.std"] == pytest.approx(values.std(ddof=1))
        assert metrics[f"{EMA}.n"] == len(values)
        for seed in seeds:
            child = connect().get_run(ids[method, seed])
            assert child.data.tags[PARENT_TAG] == found[method].info.run_id
            assert child.data.tags[GROUP_TAG] == found[method].data.tags[GROUP_TAG]
        assert found[method].data.params["epochs"] == "2"
        assert "seed" not in found[method].data.params
    # the failed seed is missing, with its reason, not averaged away
    assert found["adautomix"].data.metrics[f"{EMA}.n"] == 2
    assert "seed 2: FAILED (LossGuard" in found["adautomix"].data.tags[MISSING_TAG]
    assert PARENT_TAG not in connect().get_run(ids["adautomix", 2]).data.tags
    assert found["vanilla"].data.tags[MISSING_TAG] == "none"
    # summaries are not training runs: a comparison never counts them
    assert all(SUMMARY_TAG not in r["tags"] for r in experiment_runs(experiment))


def test_a_seed_run_again_replaces_its_value_in_the_same_summary(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = f"groups-{uuid.uuid4().hex[:8]}"
    ids = log_sweep(experiment)
    summarize(experiment, expected_seeds=[0, 1, 2])
    before = summaries(experiment)["vanilla"]
    rerun = log_run(experiment, "vanilla", 1, (90.0, 89.0), start=1_800_000_000_000)
    summarize(experiment, expected_seeds=[0, 1, 2])
    after = summaries(experiment)["vanilla"]
    assert after.info.run_id == before.info.run_id  # updated in place, not a second summary
    values = np.array([80.0, 90.0, 80.5])
    assert after.data.metrics[f"{EMA}.mean"] == pytest.approx(values.mean())
    assert after.data.metrics[f"{EMA}.std"] == pytest.approx(values.std(ddof=1))
    assert after.data.metrics[f"{EMA}.n"] == 3
    assert connect().get_run(rerun).data.tags[PARENT_TAG] == after.info.run_id
    old = connect().get_run(ids["vanilla", 1]).data.tags
    assert PARENT_TAG not in old and "superseded_by" in old
    # a seed the sweep meant to run and never did is missing too
    summarize(experiment, expected_seeds=[0, 1, 2, 3])
    assert "seed 3: no run in the store" in summaries(experiment)["mixup"].data.tags[MISSING_TAG]


def welch_by_hand(a: list[float], b: list[float]) -> float:
    """Welch's t and Satterthwaite's degrees of freedom, then the two-sided tail of t."""
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    t = (np.mean(a) - np.mean(b)) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return float(2 * stats.t.sf(abs(t), df))


def test_welch_p_matches_the_formula_and_needs_two_values_a_side():
    a, b = [82.0, 82.5, 83.1], [80.0, 81.0, 80.5]
    assert welch_p(a, b) == pytest.approx(welch_by_hand(a, b), rel=1e-9)
    assert welch_p([1.0], b) is None
    assert welch_p([1.0, 1.0], [1.0, 1.0]) == 1.0


def test_the_page_holds_the_numbers_of_the_store_and_is_the_same_bytes_twice(store, tmp_path):
    experiment = f"page-{uuid.uuid4().hex[:8]}"
    log_sweep(experiment)
    page = tmp_path / "docs" / "results.md"
    (tmp_path / "docs").mkdir()
    methods = ("vanilla", "mixup", "cutmix", "adautomix")
    write_results(experiment, page, methods=methods, seeds=[0, 1, 2], command="the command")
    assets = tmp_path / "docs" / "results"
    first = {p.name: p.read_bytes() for p in [page, *sorted(assets.iterdir())]}
    assert set(first) == {"results.md", "table.csv", "seeds.png", "curves.png"}
    write_results(experiment, page, methods=methods, seeds=[0, 1, 2], command="the command")
    second = {p.name: p.read_bytes() for p in [page, *sorted(assets.iterdir())]}
    assert second == first

    rows = {
        (r["method"], r["metric"]): r
        for r in csv.DictReader(io.StringIO(first["table.csv"].decode()))
    }
    vanilla = [v[0] for v in TOP1["vanilla"].values()]
    mixup = [v[0] for v in TOP1["mixup"].values()]
    row = rows["mixup", EMA]
    assert float(row["mean"]) == pytest.approx(np.mean(mixup), abs=1e-4)
    assert float(row["std"]) == pytest.approx(np.std(mixup, ddof=1), abs=1e-4)
    assert float(row["delta_vs_vanilla"]) == pytest.approx(
        np.mean(mixup) - np.mean(vanilla), abs=1e-4
    )
    assert float(row["welch_p"]) == pytest.approx(welch_by_hand(mixup, vanilla), rel=1e-3)
    assert row["rank"] == "1"  # the best EMA mean
    assert rows["adautomix", EMA]["n"] == "2"

    text = first["results.md"].decode()
    assert "`the command`" in text and "a test machine" in text and "`cccccccccccc`" in text
    assert "cutmix: no finished run in the store" in text  # a method the sweep never reached
    assert "adautomix, seed 2: FAILED (LossGuard" in text
    assert f"| {np.mean(mixup):.2f} ± {np.std(mixup, ddof=1):.2f} |" in text
    # the fixed cost: the steps' 30 s less 2 epochs of 3 s training and 1 s evaluation, and the
    # evaluate step's 4 s of evaluation
    assert "18.0 s a run" in text and "final evaluation (s)" in text
    assert "`top1,fgsm:images=100`" in text


def test_a_store_with_two_budgets_is_refused_naming_what_differs(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = f"mixed-{uuid.uuid4().hex[:8]}"
    log_run(experiment, "vanilla", 0, (80.0, 79.0), start=1000, epochs=2)
    log_run(experiment, "mixup", 0, (81.0, 80.0), start=2000, epochs=3)
    with pytest.raises(CompareError, match=r"2 budgets.*differ in epochs: 2, 3"):
        write_results(experiment, tmp_path / "results.md")
    assert not (tmp_path / "results.md").exists()


def test_results_names_the_valid_presets_for_an_unknown_one(capsys):
    assert main(["results", "--preset", "no-such-table"]) == 2
    err = capsys.readouterr().err
    assert "unknown sweep preset 'no-such-table'" in err and "fashion-mnist-cpu-table" in err


def test_the_samples_grid_of_adautomix_comes_from_its_run(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = f"grid-{uuid.uuid4().hex[:8]}"
    ids = log_sweep(experiment)
    picture = tmp_path / "epoch_0002.png"
    picture.write_bytes(b"\x89PNG a grid")
    connect().log_artifact(ids["adautomix", 0], str(picture), "samples")
    page = write_results(experiment, tmp_path / "results.md")
    assert (tmp_path / "results" / "adautomix-samples.png").read_bytes() == b"\x89PNG a grid"
    assert "seed 0, `samples/epoch_0002.png`" in page.read_text()


def test_the_pilot_that_chose_the_budget_is_drawn_beside_the_tables_seed_0(tmp_path, monkeypatch):
    from adautomix.presets import Pilot

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = f"table-{uuid.uuid4().hex[:8]}"
    log_sweep(experiment)
    pilot = f"pilot-{uuid.uuid4().hex[:8]}"
    log_run(pilot, "vanilla", 0, (70.0, 69.0), start=1000, epochs=3)
    missing = Pilot("pilot-never-run", "--epochs 1")
    page = write_results(
        experiment, tmp_path / "results.md", pilots=(Pilot(pilot, "--epochs 3"), missing)
    )
    text = page.read_text()
    assert "## Why this budget" in text
    assert f"- `{pilot}`: `--epochs 3`" in text
    assert "- `pilot-never-run`: `--epochs 1` (not in this store)" in text
    rows = [line for line in text.splitlines() if line.startswith(("| pilot-", "| this table"))]
    # the pilot's vanilla, then the table's seed-0 runs of the same method (vanilla), not mixup's
    assert [re.sub(" +", " ", r).split(" | ")[:2] for r in rows] == [
        [f"| {pilot}", "vanilla"],
        ["| this table", "vanilla"],
    ]
    assert "70.00" in rows[0] and "80.00" in rows[1]  # each one's EMA test top-1
    assert (tmp_path / "results" / "pilot.png").stat().st_size > 0
