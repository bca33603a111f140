"""The register components: one model, or the best of a sweep's."""

from __future__ import annotations

import uuid

import mlflow

from components.register import register, register_best
from tests.tracking_helpers import logged_model


def test_register_returns_the_version_and_its_aliases(mlflow_http):
    name = f"component-{uuid.uuid4().hex[:8]}"
    first = register.python_func(model_uri=logged_model(), score=70.0, dataset="fashion-mnist",
                                 data_version="v", registered_model=name)
    second = register.python_func(model_uri=logged_model(), score=60.0, dataset="fashion-mnist",
                                  data_version="v", registered_model=name)
    assert tuple(first) == ("1", ["challenger", "champion"], mlflow_http)
    assert tuple(second) == ("2", ["challenger"], mlflow_http)


def test_register_best_registers_the_top_scoring_of_the_collected_models(mlflow_http):
    name = f"component-{uuid.uuid4().hex[:8]}"
    uris = [logged_model() for _ in range(3)]
    version, _, _ = register_best.python_func(model_uris=uris, scores=[50.0, 90.0, 70.0],
                                                 dataset="fashion-mnist", data_version="v",
                                                 registered_model=name)
    registered = mlflow.MlflowClient().get_model_version(name, version)
    assert registered.source == uris[1] and float(registered.tags["score"]) == 90.0
