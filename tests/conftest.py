"""Shared test fixtures. Tests run on the CPU with one thread count fixed, so timings do not
fight between tests and results do not depend on the machine's core count."""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import uuid
from pathlib import Path

import pytest
import torch

from tests.servers import free_port, serve_mlflow
from tests.tiny_backbone import TinyBackbone

torch.set_num_threads(2)
# MLflow's telemetry client sets and unsets an environment variable from a thread of its own
# while the first request of a process reads os.environ: a race that fails that request with
# KeyError('_MLFLOW_TELEMETRY_SESSION_ID'). Tests send no telemetry anyway.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def pytest_collection_modifyitems(config, items):
    """Tests marked `gpu` skip where CUDA is absent, and only those: every other test runs (a
    missing or broken dependency fails, it does not skip)."""
    if torch.cuda.is_available():
        return
    no_gpu = pytest.mark.skip(reason="needs CUDA (marked gpu)")
    for item in items:
        if item.get_closest_marker("gpu"):
            item.add_marker(no_gpu)


@pytest.fixture(autouse=True)
def mlflow_follows_the_environment():
    """tracking.connect() sets MLflow's process-wide tracking URI, which outranks
    MLFLOW_TRACKING_URI and also writes it into os.environ: left in place, a test that connected
    sends every later test's fluent calls (mlflow.start_run, ...) to its store."""
    before = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    import mlflow

    mlflow.set_tracking_uri(None)
    if before is not None:
        os.environ["MLFLOW_TRACKING_URI"] = before


@pytest.fixture
def tiny_backbone():
    torch.manual_seed(0)
    return TinyBackbone()


@pytest.fixture(scope="session")
def fmnist_root(tmp_path_factory):
    """The real Fashion-MNIST (Debian's dataset-fashion-mnist), prepared once per test session."""
    from adautomix.data import prepare

    root = tmp_path_factory.mktemp("data")
    prepare("fashion-mnist", data_root=root)
    return root


@pytest.fixture
def mlflow_sqlite(tmp_path, monkeypatch, empty_mlflow_store):
    """A fresh embedded MLflow store for one test: a copy of an empty one, whose Default
    experiment keeps its artifacts in the test's folder."""
    database = tmp_path / "mlflow.db"
    shutil.copyfile(empty_mlflow_store, database)
    with contextlib.closing(sqlite3.connect(database)) as store, store:
        store.execute(
            "UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0",
            (str(tmp_path / "mlruns" / "0"),),
        )
    uri = f"sqlite:///{database}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


@pytest.fixture(scope="session")
def empty_mlflow_store(tmp_path_factory) -> Path:
    """An MLflow SQLite store with its tables made and nothing in it: MLflow's migrations take
    seconds a store, a copy of this file milliseconds."""
    from mlflow.tracking import MlflowClient

    database = tmp_path_factory.mktemp("mlflow-empty") / "mlflow.db"
    MlflowClient(f"sqlite:///{database}").search_experiments()
    return database


# --- real servers on 127.0.0.1 for the MLflow, registry, DVC and pipeline tests -----------------


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real `mlflow server` for the session: SQLite backend, artifacts served over HTTP."""
    root = tmp_path_factory.mktemp("mlflow-server")
    with serve_mlflow(
        [
            "--backend-store-uri",
            f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination",
            str(root / "artifacts"),
            "--serve-artifacts",
        ],
        root,
    ) as url:
        yield url


@pytest.fixture
def mlflow_http(mlflow_server, monkeypatch):
    """MLFLOW_TRACKING_URI pointed at the session's mlflow server, for one test."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    return mlflow_server


@pytest.fixture(scope="session")
def s3_server():
    """A real S3 endpoint for the session (moto's server; no MinIO server installs here)."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_env(s3_server, monkeypatch):
    """The endpoint and credentials of s3_server as environment variables, as a cluster's secret
    sets them, and a fresh bucket; returns the bucket name."""
    import boto3

    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_ENDPOINT_URL": s3_server,
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    bucket = f"adautomix-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    return bucket
