"""The register components: one model, or the best of a sweep's."""

from __future__ import annotations

import uuid

import mlflow
import pytest

from components.register import register, register_best
from tests.tracking_helpers import logged_model

JUDGED = dict(
    metric="model_val_top1",
    chance=10.0,
    dataset="fashion-mnist",
    data_version="v",
    chance_margin=5.0,
    min_score=0.0,
)


def test_register_returns_the_version_and_its_aliases(mlflow_http):
    name = f"component-{uuid.uuid4().hex[:8]}"
    first = register.python_func(
        model_uri=logged_model(), score=70.0, registered_model=name, **JUDGED
    )
    second = register.python_func(
        model_uri=logged_model(), score=60.0, registered_model=name, **JUDGED
    )
    assert tuple(first) == ("1", ["challenger", "champion"], mlflow_http)
    assert tuple(second) == ("2", ["challenger"], mlflow_http)


def test_a_model_at_chance_fails_the_step_with_the_reason_after_it_is_versioned(
    mlflow_http, capsys
):
    name = f"component-{uuid.uuid4().hex[:8]}"
    with pytest.raises(SystemExit) as stopped:
        register.python_func(model_uri=logged_model(), score=10.5, registered_model=name, **JUDGED)
    assert stopped.value.code == 1  # a run that failed, not bad input
    err = capsys.readouterr().err  # MLflow's own registration lines come first
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: the registry gate rejected the model")
    assert "version 1: model_val_top1 10.5 % is not above chance" in last and "Traceback" not in err
    version = mlflow.MlflowClient().get_model_version(name, "1")
    assert version.tags["gate"] == "rejected" and version.aliases == []


def test_register_best_registers_the_top_scoring_of_the_collected_models(mlflow_http):
    name = f"component-{uuid.uuid4().hex[:8]}"
    uris = [logged_model() for _ in range(3)]
    version, _, _ = register_best.python_func(
        model_uris=uris,
        scores=[50.0, 90.0, 70.0],
        metrics=["model_val_top1"] * 3,
        chances=[10.0] * 3,
        registered_model=name,
        **{k: v for k, v in JUDGED.items() if k not in ("metric", "chance")},
    )
    registered = mlflow.MlflowClient().get_model_version(name, version)
    assert registered.source == uris[1] and float(registered.tags["score"]) == 90.0
