"""The register component: a training run's one model, or the best of a sweep's."""

from __future__ import annotations

import uuid

import mlflow
import pytest

from components.register import register
from tests.tracking_helpers import logged_model

JUDGED = dict(
    dataset="fashion-mnist",
    data_version="v",
    chance_margin=5.0,
    min_score=0.0,
)


def one(model_uri: str, score: float) -> dict:
    """A training pipeline's one evaluated model, collected as the register step takes it."""
    return dict(model_uris=[model_uri], scores=[score], metrics=["model_val_top1"], chances=[10.0])


def test_register_returns_the_version_and_its_aliases(mlflow_http):
    name = f"component-{uuid.uuid4().hex[:8]}"
    first = register.python_func(**one(logged_model(), 70.0), registered_model=name, **JUDGED)
    second = register.python_func(**one(logged_model(), 60.0), registered_model=name, **JUDGED)
    assert tuple(first) == ("1", ["challenger", "champion"], mlflow_http)
    assert tuple(second) == ("2", ["challenger"], mlflow_http)


def test_a_model_at_chance_fails_the_step_with_the_reason_after_it_is_versioned(
    mlflow_http, capsys
):
    name = f"component-{uuid.uuid4().hex[:8]}"
    with pytest.raises(SystemExit) as stopped:
        register.python_func(**one(logged_model(), 10.5), registered_model=name, **JUDGED)
    assert stopped.value.code == 1  # a run that failed, not bad input
    err = capsys.readouterr().err  # MLflow's own registration lines come first
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: the registry gate rejected the model")
    assert "version 1: model_val_top1 10.5 % is not above chance" in last and "Traceback" not in err
    version = mlflow.MlflowClient().get_model_version(name, "1")
    assert version.tags["gate"] == "rejected" and version.aliases == []


def test_a_sweep_registers_the_top_scoring_of_the_collected_models(mlflow_http):
    name = f"component-{uuid.uuid4().hex[:8]}"
    uris = [logged_model() for _ in range(3)]
    version, _, _ = register.python_func(
        model_uris=uris,
        scores=[50.0, 90.0, 70.0],
        metrics=["model_val_top1"] * 3,
        chances=[10.0] * 3,
        registered_model=name,
        **JUDGED,
    )
    registered = mlflow.MlflowClient().get_model_version(name, version)
    assert registered.source == uris[1] and float(registered.tags["score"]) == 90.0
    assert len(mlflow.MlflowClient().search_model_versions(f"name='{name}'")) == 1
