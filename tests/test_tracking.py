"""Tracking: a killed run is never left RUNNING by the next start, and no URI the project prints
carries a password."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

from adautomix.config import RunConfig
from adautomix.redact import redact
from adautomix.tracking import FAILURE_TAG, OUTPUT_DIR_TAG, Tracker, TrackingError, connect

# A process that opens its MLflow run and is killed (SIGKILL: no handler, no cleanup runs)
# before it writes anything else: a training killed before its first checkpoint.
KILLED_RUN = """
import os, signal, sys
from adautomix.config import RunConfig
from adautomix.tracking import Tracker
tracker = Tracker(RunConfig(output_dir=sys.argv[1], experiment="stale"), "hash")
print(tracker.run_id, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def killed_run(output_dir) -> str:
    proc = subprocess.run([sys.executable, "-c", KILLED_RUN, str(output_dir)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr
    return proc.stdout.split()[0]


def left_running(client: MlflowClient, output_dir) -> str:
    """Another run a kill left RUNNING, as the store holds it."""
    experiment = client.get_experiment_by_name("stale").experiment_id
    return client.create_run(experiment, tags={OUTPUT_DIR_TAG: str(output_dir.resolve())}).info.run_id


def test_a_resume_continues_the_killed_run_and_a_fresh_start_marks_it_killed(mlflow_sqlite, tmp_path):
    client = MlflowClient(mlflow_sqlite)
    stale = killed_run(tmp_path / "run")
    assert client.get_run(stale).info.status == "RUNNING"
    twin, other = left_running(client, tmp_path / "run"), left_running(client, tmp_path / "other")

    resumed = Tracker(RunConfig(output_dir=str(tmp_path / "run"), experiment="stale"), "hash",
                      run_id=stale)
    assert resumed.run_id == stale and client.get_run(stale).info.status == "RUNNING"
    assert client.get_run(twin).info.status == "KILLED"
    assert "killed" in client.get_run(twin).data.tags[FAILURE_TAG]
    assert client.get_run(other).info.status == "RUNNING"      # another folder's run is not ours
    resumed.finish("FAILED", reason="training loss became nan")
    run = client.get_run(stale)
    assert run.info.status == "FAILED" and run.data.tags[FAILURE_TAG] == "training loss became nan"

    fresh = Tracker(RunConfig(output_dir=str(tmp_path / "other"), experiment="stale"), "hash")
    fresh.finish()
    assert client.get_run(other).info.status == "KILLED"
    assert client.get_run(fresh.run_id).info.status == "FINISHED"
    assert client.get_run(fresh.run_id).data.tags[OUTPUT_DIR_TAG] == str((tmp_path / "other").resolve())


@pytest.mark.parametrize("uri,shown", [
    ("http://alice:s3cret@mlflow.example:5000/", "http://alice:***@mlflow.example:5000/"),
    ("https://s3cret@mlflow.example/", "https://***@mlflow.example/"),
    ("postgresql://mlflow:s3cret@db:5432/mlflow", "postgresql://mlflow:***@db:5432/mlflow"),
    ("https://mlflow.example/?token=s3cret&x=1", "https://mlflow.example/?token=***&x=1"),
    ("sqlite:////tmp/mlflow.db", "sqlite:////tmp/mlflow.db"),
])
def test_redact_masks_credentials_and_keeps_the_place(uri, shown):
    assert redact(f"error at {uri} (retry)") == f"error at {shown} (retry)"


def test_an_unreachable_server_is_named_without_its_password(monkeypatch, caplog):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://alice:s3cret@127.0.0.1:9")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with caplog.at_level(logging.DEBUG), pytest.raises(TrackingError) as error:
        connect()
    assert "127.0.0.1:9" in str(error.value) and "alice:***@" in str(error.value)
    assert error.value.__cause__ is None    # the server's own message may quote the URI
    assert "s3cret" not in str(error.value) and "s3cret" not in caplog.text
    assert os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] == "true"
