"""The run lock's rules, on real files and processes: a live owner keeps the folder, a gone one
(stopped heartbeat, ended process) loses it to the next start, and a lock is released only by its
owner. The lock in a real training run: tests/engine/test_reliability.py."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from adautomix.engine.run_lock import (
    LOCK_NAME,
    STALE_SECONDS,
    RunLockError,
    acquire,
    check_free,
    read_lock,
)


def write_lock(folder, **owner):
    (folder / LOCK_NAME).write_text(json.dumps(owner))


def test_a_live_owner_on_another_host_keeps_the_folder(tmp_path):
    write_lock(tmp_path, run_id="abc", host="node-7", pid=12, heartbeat=time.time() - 30)
    for attempt in (acquire, check_free):
        with pytest.raises(
            RunLockError,
            match="in use by another run .MLflow run abc, process 12 "
            "on host node-7, alive 3[0-9] s ago",
        ):
            attempt(tmp_path)
    assert read_lock(tmp_path / LOCK_NAME)["run_id"] == "abc"


def test_an_owner_whose_heartbeat_stopped_loses_the_folder(tmp_path):
    write_lock(
        tmp_path, run_id="abc", host="node-7", pid=12, heartbeat=time.time() - STALE_SECONDS - 1
    )
    check_free(tmp_path)
    lock = acquire(tmp_path, run_id="mine")
    owner = read_lock(tmp_path / LOCK_NAME)
    assert (owner["run_id"], owner["pid"], owner["host"]) == (
        "mine",
        os.getpid(),
        socket.gethostname(),
    )
    lock.release()
    assert os.listdir(tmp_path) == []


def test_an_owner_whose_process_ended_on_this_host_loses_the_folder(tmp_path):
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    write_lock(
        tmp_path,
        run_id="abc",
        host=socket.gethostname(),
        pid=int(ended.stdout),
        heartbeat=time.time(),
    )
    acquire(tmp_path).release()
    alive = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    try:
        write_lock(
            tmp_path, run_id="abc", host=socket.gethostname(), pid=alive.pid, heartbeat=time.time()
        )
        with pytest.raises(RunLockError, match=f"process {alive.pid} on host"):
            acquire(tmp_path)
    finally:
        alive.communicate(b"")


def test_an_unreadable_lock_is_live_until_it_is_old(tmp_path):
    (tmp_path / LOCK_NAME).write_text("")
    with pytest.raises(RunLockError, match="an owner its lock file does not name"):
        acquire(tmp_path)
    old = time.time() - STALE_SECONDS - 1
    os.utime(tmp_path / LOCK_NAME, (old, old))
    acquire(tmp_path).release()


def test_a_lock_is_released_only_by_its_owner(tmp_path):
    lock = acquire(tmp_path, run_id="mine")
    write_lock(tmp_path, run_id="theirs", host="node-7", pid=12, heartbeat=time.time())
    lock.set_run_id("mine-again")  # the owner that lost its lock does not write it back
    lock.release()
    assert read_lock(tmp_path / LOCK_NAME)["run_id"] == "theirs"
    assert os.listdir(tmp_path) == [LOCK_NAME]  # nothing written aside was left behind
