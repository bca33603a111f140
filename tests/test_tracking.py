"""Tracking: a killed run is never left RUNNING by the next start, no URI the project prints
carries a password, a store that cannot take a run is named before anything is written, a
server behind an ingress is reached with its token and its CA, and a server lost mid-run stops
the run in one line, with nothing trained lost and its record caught up by the resume."""

from __future__ import annotations

import http.client
import json
import logging
import os
import subprocess
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from adautomix.config import RunConfig
from adautomix.redact import redact
from adautomix.tracking import (
    BACKLOG_NAME,
    FAILURE_TAG,
    OUTPUT_DIR_TAG,
    RECOVERED_TAG,
    Tracker,
    TrackingError,
    connect,
)
from tests.servers import free_port
from tests.tracking_helpers import HOP_BY_HOP, certificate_authority, ingress

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
    proc = subprocess.run(
        [sys.executable, "-c", KILLED_RUN, str(output_dir)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -9, proc.stderr
    return proc.stdout.split()[0]


def left_running(client: MlflowClient, output_dir) -> str:
    """Another run a kill left RUNNING, as the store holds it."""
    experiment = client.get_experiment_by_name("stale").experiment_id
    return client.create_run(
        experiment, tags={OUTPUT_DIR_TAG: str(output_dir.resolve())}
    ).info.run_id


def test_a_resume_continues_the_killed_run_and_a_fresh_start_marks_it_killed(
    mlflow_sqlite, tmp_path
):
    client = MlflowClient(mlflow_sqlite)
    stale = killed_run(tmp_path / "run")
    assert client.get_run(stale).info.status == "RUNNING"
    twin, other = left_running(client, tmp_path / "run"), left_running(client, tmp_path / "other")

    resumed = Tracker(
        RunConfig(output_dir=str(tmp_path / "run"), experiment="stale"), "hash", run_id=stale
    )
    assert resumed.run_id == stale and client.get_run(stale).info.status == "RUNNING"
    assert client.get_run(twin).info.status == "KILLED"
    assert "killed" in client.get_run(twin).data.tags[FAILURE_TAG]
    assert client.get_run(other).info.status == "RUNNING"  # another folder's run is not ours
    resumed.finish("FAILED", reason="training loss became nan")
    run = client.get_run(stale)
    assert run.info.status == "FAILED" and run.data.tags[FAILURE_TAG] == "training loss became nan"

    fresh = Tracker(RunConfig(output_dir=str(tmp_path / "other"), experiment="stale"), "hash")
    fresh.finish()
    assert client.get_run(other).info.status == "KILLED"
    assert client.get_run(fresh.run_id).info.status == "FINISHED"
    assert client.get_run(fresh.run_id).data.tags[OUTPUT_DIR_TAG] == str(
        (tmp_path / "other").resolve()
    )


def test_a_resumed_run_that_finishes_drops_the_reason_it_had_failed_with(mlflow_sqlite, tmp_path):
    client = MlflowClient(mlflow_sqlite)
    config = RunConfig(output_dir=str(tmp_path / "run"), experiment="recovered")
    stopped = Tracker(config, "hash")
    stopped.finish("KILLED", reason="stopped by SIGTERM at step 6 (epoch 2, batch 2 of 4)")

    evaluated = Tracker(config, "hash", run_id=stopped.run_id)  # ends the run as it found it
    evaluated.finish(evaluated.previous_status)
    assert client.get_run(stopped.run_id).data.tags[FAILURE_TAG].startswith("stopped by SIGTERM")

    Tracker(config, "hash", run_id=stopped.run_id).finish()
    run = client.get_run(stopped.run_id)
    assert run.info.status == "FINISHED" and FAILURE_TAG not in run.data.tags
    assert (
        run.data.tags[RECOVERED_TAG]
        == "KILLED: stopped by SIGTERM at step 6 (epoch 2, batch 2 of 4)"
    )


@pytest.mark.parametrize(
    "uri,shown",
    [
        ("http://alice:s3cret@mlflow.example:5000/", "http://alice:***@mlflow.example:5000/"),
        ("https://s3cret@mlflow.example/", "https://***@mlflow.example/"),
        ("postgresql://mlflow:s3cret@db:5432/mlflow", "postgresql://mlflow:***@db:5432/mlflow"),
        ("https://mlflow.example/?token=s3cret&x=1", "https://mlflow.example/?token=***&x=1"),
        ("sqlite:////tmp/mlflow.db", "sqlite:////tmp/mlflow.db"),
    ],
)
def test_redact_masks_credentials_and_keeps_the_place(uri, shown):
    assert redact(f"error at {uri} (retry)") == f"error at {shown} (retry)"


def test_redact_masks_the_token_and_password_mlflow_takes_from_the_environment(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "eyJhbGciOi.tok")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "hunter22")
    said = redact("401 for Bearer eyJhbGciOi.tok at https://mlflow.example/ (bob/hunter22)")
    assert said == "401 for Bearer *** at https://mlflow.example/ (bob/***)"


def test_an_unreachable_server_is_named_without_its_password(monkeypatch, caplog):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://alice:s3cret@127.0.0.1:9")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with caplog.at_level(logging.DEBUG), pytest.raises(TrackingError) as error:
        connect()
    assert "127.0.0.1:9" in str(error.value) and "alice:***@" in str(error.value)
    assert error.value.__cause__ is None  # the server's own message may quote the URI
    assert "s3cret" not in str(error.value) and "s3cret" not in caplog.text
    assert os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] == "true"


# --- a store that cannot take the run: one line, the right exit, nothing written -------------

TRAIN = [
    "train",
    "--dataset",
    "fashion-mnist",
    "--model",
    "resnet18",
    "--method",
    "vanilla",
    "--epochs",
    "1",
    "--batch-size",
    "10",
    "--subset",
    "20",
    "--num-workers",
    "0",
]


def train_argv(tmp_path) -> list[str]:
    return [*TRAIN, "--data-root", str(tmp_path / "data"), "--output-dir", str(tmp_path / "run")]


def nothing_written(tmp_path) -> bool:
    return not (tmp_path / "run").exists() and not (tmp_path / "data").exists()


def test_a_sqlite_store_in_a_missing_folder_is_named_exit_2_before_anything_is_written(
    tmp_path, monkeypatch, capsys
):
    from adautomix.cli import main

    missing = Path("/nonexistent-dir")
    assert not missing.exists()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{missing}/x.db")
    assert main(train_argv(tmp_path)) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == (
        f"error: MLFLOW_TRACKING_URI sqlite:///{missing}/x.db: the folder {missing} "
        f"does not exist; create it (mkdir -p {missing}) or point MLFLOW_TRACKING_URI "
        "at a database file in a writable folder (or unset it for ./mlflow.db)"
    )
    assert nothing_written(tmp_path) and not missing.exists()


def test_a_sqlite_store_under_a_file_is_named_not_file_exists(tmp_path, monkeypatch, capsys):
    from adautomix.cli import main

    (tmp_path / "notes").write_text("a file where a folder is meant")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'notes' / 'db' / 'x.db'}")
    assert main(train_argv(tmp_path)) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert f"{tmp_path / 'notes'} is a file, not a folder" in line and "File exists" not in line
    assert nothing_written(tmp_path)


def test_a_sqlite_store_in_a_read_only_folder_is_named_exit_2_before_anything_is_written(tmp_path):
    read_only = tmp_path / "read-only"
    read_only.mkdir()
    read_only.chmod(0o555)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{read_only / 'x.db'}"}
    # root writes into any folder: take away its capability to, as for any other user
    as_user = (
        ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
    )
    done = subprocess.run(
        [*as_user, sys.executable, "-m", "adautomix.cli", *train_argv(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    read_only.chmod(0o755)
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(
        f"error: MLFLOW_TRACKING_URI sqlite:///{read_only / 'x.db'}: "
        f"the folder {read_only} is not writable"
    )
    assert "Traceback" not in done.stderr and nothing_written(tmp_path)
    assert list(read_only.iterdir()) == []


def test_a_sqlite_store_where_no_file_can_be_made_is_named_exit_2_before_anything_is_written(
    tmp_path, monkeypatch, capsys
):
    from adautomix.cli import main

    # /proc passes every mode check for root and takes no file from anyone
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////proc/x.db")
    assert main(train_argv(tmp_path)) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(
        "error: MLFLOW_TRACKING_URI sqlite:////proc/x.db: cannot write a file in /proc ("
    )
    assert line.endswith(
        "make it writable or point MLFLOW_TRACKING_URI at a database file in a "
        "writable folder (or unset it for ./mlflow.db)"
    )
    assert "damaged" not in line and nothing_written(tmp_path)


def test_a_server_that_is_down_is_named_at_once_exit_1_before_anything_is_written(
    tmp_path, monkeypatch, capsys
):
    from adautomix.cli import main

    # MLflow's own retries are left as they are: the check must not wait for them
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    closed = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", closed)
    assert main(train_argv(tmp_path)) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: MLflow tracking server at {closed} cannot be reached")
    assert "Start it" in line and nothing_written(tmp_path)


# --- an existing MLflow behind an ingress: a bearer token and a private CA -------------------

TOKEN = "t0ken-7f3a9c"


def test_the_check_and_the_run_reach_a_server_behind_an_ingress_with_its_token(
    mlflow_server, monkeypatch, tmp_path, caplog
):
    with ingress(mlflow_server, TOKEN) as (url, gate):
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        monkeypatch.delenv("MLFLOW_TRACKING_TOKEN", raising=False)
        with caplog.at_level(logging.DEBUG), pytest.raises(TrackingError) as refused:
            connect()
        assert f"server at {url} refused the request (401" in str(refused.value)
        assert "MLFLOW_TRACKING_TOKEN" in str(refused.value)

        monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", TOKEN)
        run = Tracker(RunConfig(output_dir=str(tmp_path / "run"), experiment="ingress"), "hash")
        run.finish()
        assert gate.authorizations[-1] == f"Bearer {TOKEN}"
    stored = MlflowClient(mlflow_server).get_run(run.run_id)
    assert stored.info.status == "FINISHED"
    assert TOKEN not in caplog.text and TOKEN not in str(refused.value)


def test_a_server_with_a_private_ca_is_reached_with_its_bundle_and_named_without(
    mlflow_server, monkeypatch, tmp_path
):
    ca, certificate, key = certificate_authority(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", TOKEN)
    monkeypatch.delenv("MLFLOW_TRACKING_SERVER_CERT_PATH", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_INSECURE_TLS", raising=False)
    with ingress(mlflow_server, TOKEN, tls=(certificate, key)) as (url, gate):
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        with pytest.raises(
            TrackingError,
            match=f"server at {url} presented a TLS certificate "
            "this client does not trust; set MLFLOW_TRACKING_SERVER_CERT_PATH",
        ):
            connect()
        monkeypatch.setenv("MLFLOW_TRACKING_SERVER_CERT_PATH", str(ca))
        connect().search_experiments(max_results=1)
        assert gate.authorizations and set(gate.authorizations) == {f"Bearer {TOKEN}"}


# --- a server lost mid-run: no password anywhere, nothing trained lost, the record caught up --

PASSWORD = "pa55-w0rd-9q"


class _Doomed(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _forward(self):
        doomed = self.server
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if not doomed.dead.is_set() and doomed.dies_at in logged_steps(body):
            doomed.dead.set()
            doomed.died = time.monotonic()
            threading.Thread(target=doomed.close, daemon=True).start()
        if doomed.dead.is_set():  # a dead server: the connection drops, no answer
            self.close_connection = True
            return
        upstream = http.client.HTTPConnection(
            doomed.upstream.hostname, doomed.upstream.port, timeout=60
        )
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        upstream.request(self.command, self.path, body=body, headers=headers)
        answer = upstream.getresponse()
        data = answer.read()
        upstream.close()
        self.send_response(answer.status)
        for key, value in answer.getheaders():
            if key.lower() not in HOP_BY_HOP:
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward


def logged_steps(body: bytes) -> set[int]:
    """The steps whose train_loss a log-batch request carries."""
    try:
        metrics = json.loads(body).get("metrics", [])
    except (ValueError, AttributeError):
        return set()
    return {int(m.get("step", 0)) for m in metrics if m.get("key") == "train_loss"}


class Doomed(ThreadingHTTPServer):
    """A port in front of a real MLflow server that forwards every request until the metrics of
    epoch `dies_at` arrive, then drops every connection and closes: a server lost mid-run."""

    daemon_threads = True

    def __init__(self, upstream: str, dies_at: int):
        super().__init__(("127.0.0.1", 0), _Doomed)
        self.upstream, self.dies_at = urllib.parse.urlsplit(upstream), dies_at
        self.dead, self.died = threading.Event(), None
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def close(self):
        self.shutdown()
        self.server_close()

    def uri(self) -> str:
        return f"http://alice:{PASSWORD}@127.0.0.1:{self.server_port}"


def train_through(uri: str, tmp_path: Path, epochs: int, *flags: str, debug: bool = False):
    """`adautomix train` in its own process against `uri`: (exit status, stdout + stderr)."""
    argv = [
        *TRAIN,
        "--epochs",  # the last one given counts
        str(epochs),
        "--test-subset",
        "10",
        "--model-width",
        "8",
        "--no-progress",
        "--log-images-every",
        "0",
        "--experiment",
        "server-lost",
        "--data-root",
        str(tmp_path / "data"),
        "--output-dir",
        str(tmp_path / "run"),
    ]
    done = subprocess.run(
        [sys.executable, "-m", "adautomix.cli", *(["--debug"] if debug else []), *argv, *flags],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "MLFLOW_TRACKING_URI": uri},
        timeout=600,
    )
    return done.returncode, done.stdout + done.stderr


def test_a_server_lost_mid_run_stops_in_one_line_without_its_password_and_loses_nothing(
    mlflow_server, tmp_path
):
    from adautomix.data import prepare
    from adautomix.engine.checkpoint import load_checkpoint
    from tests.data import fixtures

    source = fixtures.make_fashion_mnist(tmp_path / "raw", n_train=40, n_test=10)
    prepare("fashion-mnist", source=source, data_root=tmp_path / "data")

    doomed = Doomed(mlflow_server, dies_at=2)
    status, said = train_through(doomed.uri(), tmp_path, 2)
    stopped = time.monotonic()
    shown = f"http://alice:***@127.0.0.1:{doomed.server_port}"
    assert status == 1, said
    assert PASSWORD not in said and "Traceback" not in said, said
    error = said.strip().splitlines()[-1]
    assert error.startswith(
        f"error: lost the MLflow tracking server at {shown} while recording the metrics of step 2"
    ), error
    assert f"that record waits in {tmp_path / 'run' / BACKLOG_NAME}" in error
    assert "--resume" in error and said.count("error:") == 1
    # MLflow's two retries of the lost request, then nothing more is asked of the server
    assert said.count("Retrying") == 2 and stopped - doomed.died < 30, said
    state = load_checkpoint(tmp_path / "run")
    assert state["epoch"] == 2  # the epoch whose record was lost is checkpointed all the same
    run_id = state["run_id"]

    # a traceback, on request, holds no password either; the lost epoch's record is sent first
    doomed = Doomed(mlflow_server, dies_at=3)
    status, said = train_through(doomed.uri(), tmp_path, 3, "--resume", debug=True)
    assert status == 1 and "Traceback" in said, said
    assert PASSWORD not in said, said
    assert load_checkpoint(tmp_path / "run")["epoch"] == 3

    status, said = train_through(
        mlflow_server.replace("http://", f"http://alice:{PASSWORD}@"), tmp_path, 3, "--resume"
    )
    assert status == 0 and PASSWORD not in said, said
    client = MlflowClient(mlflow_server)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and FAILURE_TAG not in run.data.tags
    logged = [m.step for m in client.get_metric_history(run_id, "train_loss")]
    assert sorted(logged) == [1, 2, 3]  # every epoch recorded, once
    assert [m.step for m in client.get_metric_history(run_id, "test_top1_median10")] == [3]
    assert not (tmp_path / "run" / BACKLOG_NAME).exists()  # sent, then forgotten
