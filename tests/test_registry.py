"""The registry against a real MLflow server over HTTP: versions, challenger and champion."""

from __future__ import annotations

import uuid

import pytest

from adautomix.registry import (CHALLENGER, CHAMPION, Candidate, RegistryError, register,
                                register_best)
from adautomix.tracking import TrackingError, connect
from tests.tracking_helpers import logged_model


def candidate(score: float) -> Candidate:
    return Candidate(logged_model(), score)


@pytest.fixture
def name(mlflow_http):
    return f"model-{uuid.uuid4().hex[:8]}"


def aliases(name: str) -> dict[str, str]:
    return dict(connect().get_registered_model(name).aliases)


def test_the_first_version_is_challenger_and_champion(name):
    done = register(candidate(80.0), name, "fashion-mnist")
    assert done.version == "1" and done.promoted
    assert aliases(name) == {CHALLENGER: "1", CHAMPION: "1"}
    version = connect().get_model_version(name, "1")
    assert version.tags["dataset"] == "fashion-mnist" and float(version.tags["score"]) == 80.0


def test_a_better_model_takes_the_champion_alias(name):
    register(candidate(80.0), name, "fashion-mnist")
    done = register(candidate(81.5), name, "fashion-mnist")
    assert done.promoted and "beats" in done.reason
    assert aliases(name) == {CHALLENGER: "2", CHAMPION: "2"}


@pytest.mark.parametrize("score", [79.0, 80.0])
def test_a_worse_or_equal_model_is_only_the_challenger(name, score):
    register(candidate(80.0), name, "fashion-mnist")
    done = register(candidate(score), name, "fashion-mnist")
    assert not done.promoted and "does not beat" in done.reason
    assert aliases(name) == {CHALLENGER: "2", CHAMPION: "1"}


def test_a_champion_on_another_dataset_or_metric_is_not_challenged(name):
    register(candidate(50.0), name, "cifar100")
    on_other_data = register(candidate(90.0), name, "fashion-mnist")
    on_other_metric = register(candidate(90.0), name, "cifar100", metric="test_top5")
    assert not on_other_data.promoted and "cifar100" in on_other_data.reason
    assert not on_other_metric.promoted
    assert aliases(name)[CHAMPION] == "1"


def test_register_best_registers_only_the_best_candidate(name):
    candidates = [candidate(s) for s in (70.0, 85.0, 60.0)]
    done = register_best(candidates, name, "fashion-mnist", data_version="d" * 32 + ".dir")
    version = connect().get_model_version(name, done.version)
    assert float(version.tags["score"]) == 85.0 and version.tags["data_version"].startswith("ddd")
    assert len(connect().search_model_versions(f"name='{name}'")) == 1


def test_an_empty_name_is_one_model_per_dataset(mlflow_http):
    dataset = "cub200"
    done = register(candidate(10.0), "", dataset)
    assert done.name == "adautomix-cub200"


def test_an_unreachable_server_is_named(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with pytest.raises(TrackingError, match="127.0.0.1:9"):
        register(Candidate("models:/m-x", 1.0), "x", "fashion-mnist")


@pytest.mark.parametrize("score", [float("nan"), float("inf"), float("-inf")])
def test_a_non_finite_score_is_never_registered(name, score):
    register(candidate(80.0), name, "fashion-mnist")
    with pytest.raises(RegistryError, match="finite score"):
        register(candidate(score), name, "fashion-mnist")
    assert len(connect().search_model_versions(f"name='{name}'")) == 1
    assert aliases(name) == {CHALLENGER: "1", CHAMPION: "1"}


def test_register_best_passes_over_a_nan_candidate(name):
    done = register_best([candidate(float("nan")), candidate(60.0), candidate(70.0)], name,
                         "fashion-mnist")
    assert float(connect().get_model_version(name, done.version).tags["score"]) == 70.0
    with pytest.raises(RegistryError, match="none of the 1 candidates"):
        register_best([candidate(float("nan"))], name, "fashion-mnist")


def test_a_nan_champion_from_before_the_check_can_be_beaten(name):
    client = connect()
    register(candidate(80.0), name, "fashion-mnist")
    client.set_model_version_tag(name, "1", "score", "nan")
    assert register(candidate(10.0), name, "fashion-mnist").promoted


def test_the_reported_store_has_no_password(monkeypatch, mlflow_http, name):
    with_password = mlflow_http.replace("http://", "http://alice:s3cret@")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", with_password)
    done = register(candidate(50.0), name, "fashion-mnist")
    assert "s3cret" not in done.tracking_uri and done.tracking_uri.startswith("http://alice:***@")
