"""The run page's link to the MLflow run opens in a browser: with --mlflow-ui-url the evaluate step
links to the UI's address instead of the tracking URI's in-cluster host."""

from __future__ import annotations

import mlflow
import pytest

from adautomix.steps import run_link
from pipeline.cli import main
from tests.helpers import PROJECT, compiled

UI = "https://mlflow.example.com/tracking"
MLFLOW_UI_ENV = "ADAUTOMIX_MLFLOW_UI_URL"  # what the compiled pipeline gives the evaluate step


@pytest.fixture
def logged_run(mlflow_http):
    """A run on the session's server, which the steps reach by an address a browser cannot."""
    client = mlflow.MlflowClient(mlflow_http)
    experiment = client.create_experiment(f"run-link-{id(client)}")
    run = client.create_run(experiment)
    client.set_terminated(run.info.run_id)
    return run.info.run_id, experiment


def test_the_link_goes_to_the_ui_address_when_one_is_given(logged_run, mlflow_http, monkeypatch):
    run_id, experiment = logged_run
    monkeypatch.setenv(MLFLOW_UI_ENV, UI + "/")
    link = run_link(run_id)
    assert link == f"[MLflow run {run_id}]({UI}/#/experiments/{experiment}/runs/{run_id})\n"
    assert mlflow_http.removeprefix("http://") not in link  # not the tracking server's host


def test_without_a_ui_address_the_link_goes_to_the_tracking_server(logged_run, mlflow_http):
    run_id, experiment = logged_run
    assert run_link(run_id) == (
        f"[MLflow run {run_id}]({mlflow_http}/#/experiments/{experiment}/runs/{run_id})\n"
    )


def test_the_ui_address_reaches_the_evaluate_step_only(tmp_path):
    spec, _ = compiled(tmp_path, "--mlflow-ui-url", UI)
    executors = spec["deploymentSpec"]["executors"]
    env = {
        name.removeprefix("exec-"): {e["name"]: e["value"] for e in e["container"].get("env", [])}
        for name, e in executors.items()
    }
    assert env["evaluate"][MLFLOW_UI_ENV] == UI
    assert [step for step, values in env.items() if MLFLOW_UI_ENV in values] == ["evaluate"]


@pytest.mark.parametrize(
    "url", ["mlflow.example.com", "ftp://mlflow.example.com", "https://user:pw@mlflow.example.com"]
)
def test_a_ui_address_a_browser_cannot_open_fails_at_compile_time(tmp_path, capsys, url):
    path = tmp_path / "pipeline.yaml"
    flags = ["compile", "--output", str(path), "--workspace", str(PROJECT), "--mlflow-ui-url", url]
    assert main(flags) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--mlflow-ui-url" in err[0] and "https://" in err[0]
    assert not path.exists() and ":pw@" not in err[0]  # nor the credentials, when it has some
