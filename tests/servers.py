"""Real servers on 127.0.0.1 for the tests: a free port, and `mlflow server` started and stopped
around a block (the session's server in conftest.py, and the tests that need one of their own)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def serve_mlflow(
    args: list[str], root: Path, env: dict | None = None, health_headers: dict | None = None
):
    """`mlflow server ARGS` on 127.0.0.1:PORT until the block ends; yields its URL."""
    port = free_port()
    log = open(root / "server.log", "wb")
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            *args,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        # no background job runner: tracking and the registry need none, and it costs a process
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **(env or {})},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        try:
            request = urllib.request.Request(f"{url}/health", headers=health_headers or {})
            urllib.request.urlopen(request, timeout=2).close()
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                os.killpg(server.pid, signal.SIGKILL)
                pytest.fail(
                    f"mlflow server did not start:\n{(root / 'server.log').read_text()[-3000:]}"
                )
            time.sleep(0.5)
    try:
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        log.close()
