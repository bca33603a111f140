"""Runs and models on the test MLflow server, made without touching MLflow's process-wide active
experiment (which would leak into other tests that resume runs)."""

from __future__ import annotations

import mlflow

from adautomix.tracking import connect


def experiment_id(name: str) -> str:
    client = connect()
    found = client.get_experiment_by_name(name)
    return found.experiment_id if found else client.create_experiment(name)


def logged_model(experiment: str = "registry-tests") -> str:
    """The URI of a model entity in a finished run; the registry needs no weights to register it."""
    with mlflow.start_run(experiment_id=experiment_id(experiment)) as run:
        model = mlflow.initialize_logged_model(name="model", source_run_id=run.info.run_id)
    return f"models:/{model.model_id}"
