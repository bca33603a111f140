"""The run lock's rules, on real files and processes: a live owner keeps the folder, a gone one
(stopped heartbeat, ended process) loses it to the next start within a minute, a retried TrainJob
step is not blocked by its own job, and a lock is released only by its owner. The lock in a real
training run: tests/engine/test_reliability.py."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from adautomix.cluster.job import job_name
from adautomix.data import prepare
from adautomix.engine import run_lock
from adautomix.engine.run_lock import (
    LOCK_NAME,
    STALE_SECONDS,
    RunLockError,
    acquire,
    check_free,
    read_lock,
)
from adautomix.steps import prepare_run
from tests.data import fixtures


def write_lock(folder, **owner):
    """Write the lock whole, as a holder does (a reader never sees it half written)."""
    (folder / "lock.tmp").write_text(json.dumps(owner))
    os.replace(folder / "lock.tmp", folder / LOCK_NAME)


def test_a_live_owner_on_another_host_keeps_the_folder(tmp_path):
    write_lock(tmp_path, run_id="abc", host="node-7", pid=12, heartbeat=time.time() - 5)
    for attempt in (acquire, check_free):
        with pytest.raises(
            RunLockError,
            match="in use by another run .MLflow run abc, process 12 "
            "on host node-7, alive [5-9] s ago",
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


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="zombies are read from /proc")
def test_an_owner_that_ended_but_was_never_reaped_loses_the_folder(tmp_path):
    """A killed pod's trainer is orphaned to a PID 1 that need not reap it: a zombie, which still
    answers signals but will never beat again."""
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 30
    # not waited for: it stays a zombie of this process until the end of the test
    while Path(f"/proc/{zombie.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        assert time.monotonic() < deadline, "the child did not end"
        time.sleep(0.01)
    try:
        os.kill(zombie.pid, 0)  # what a signal alone says: still there
        write_lock(
            tmp_path, run_id="abc", host=socket.gethostname(), pid=zombie.pid, heartbeat=time.time()
        )
        acquire(tmp_path, run_id="mine").release()
    finally:
        zombie.wait()


def test_an_unreadable_lock_names_its_file_and_the_fix_and_is_stale_once_old(tmp_path):
    path = tmp_path / LOCK_NAME
    path.write_text("")
    for attempt in (acquire, check_free):
        with pytest.raises(RunLockError) as error:
            attempt(tmp_path)
        assert f"{path} names no run (empty or not JSON" in str(error.value)
        assert f"if no run trains in {tmp_path}, delete {path}" in str(error.value)
    old = time.time() - 61  # a minute, not ten
    os.utime(path, (old, old))
    check_free(tmp_path)
    acquire(tmp_path).release()


def test_a_lock_is_released_only_by_its_owner(tmp_path):
    lock = acquire(tmp_path, run_id="mine")
    write_lock(tmp_path, run_id="theirs", host="node-7", pid=12, heartbeat=time.time())
    lock.set_run_id("mine-again")  # the owner that lost its lock does not write it back
    lock.release()
    assert read_lock(tmp_path / LOCK_NAME)["run_id"] == "theirs"
    assert os.listdir(tmp_path) == [LOCK_NAME]  # nothing written aside was left behind


# --- a retry on another pod (issue 31) ---------------------------------------------------------


def test_a_dead_pod_on_another_host_loses_the_folder_within_a_minute(tmp_path):
    """An OOMKill or a lost node leaves a lock with a fresh heartbeat on a host the retry cannot
    look into: a minute after its last beat it is the retry's, not ten minutes."""
    write_lock(tmp_path, run_id="abc", host="train-attempt-1", pid=7, heartbeat=time.time() - 61)
    check_free(tmp_path)
    acquire(tmp_path, run_id="retry").release()


@pytest.fixture
def quick(monkeypatch):
    """The lock's clock in tenths of a second: a beat every 0.2 s, stale after 1 s."""
    monkeypatch.setattr(run_lock, "HEARTBEAT_SECONDS", 0.2)
    monkeypatch.setattr(run_lock, "STALE_SECONDS", 1.0)


def test_a_retry_soon_after_its_attempt_died_waits_it_out_and_says_so(tmp_path, quick, caplog):
    """The step's retry comes 30 s after the failure: its attempt has missed beats but is not yet
    stale. The retry waits for it to go stale instead of failing, and says what it waits for."""
    write_lock(tmp_path, run_id="abc", host="train-attempt-1", pid=7, heartbeat=time.time() - 0.5)
    start = time.monotonic()
    lock = acquire(tmp_path, run_id="retry")
    assert 0.3 < time.monotonic() - start < 3
    assert read_lock(tmp_path / LOCK_NAME)["run_id"] == "retry"
    lock.release()
    assert f"waiting for {tmp_path / LOCK_NAME}" in caplog.text
    assert "MLflow run abc, process 7 on host train-attempt-1" in caplog.text


def test_a_holder_that_beats_while_it_is_watched_keeps_the_folder(tmp_path, quick):
    """A live holder whose beats look late (a slow disk, a clock behind ours) beats again while
    the next start waits, and keeps the folder: two live runs still exclude each other."""
    stop = threading.Event()

    def beat():
        while not stop.wait(0.1):
            write_lock(tmp_path, run_id="abc", host="node-7", pid=12, heartbeat=time.time() - 0.7)

    holder = threading.Thread(target=beat)
    holder.start()
    try:
        time.sleep(0.3)
        for attempt in (acquire, check_free):
            with pytest.raises(RunLockError, match="in use by another run .MLflow run abc"):
                attempt(tmp_path)
    finally:
        stop.set()
        holder.join()
    assert read_lock(tmp_path / LOCK_NAME)["run_id"] == "abc"


@pytest.fixture(scope="module")
def noise_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("noise")
    source = fixtures.make_fashion_mnist(root / "raw", n_train=100, n_test=50)
    prepare("fashion-mnist", source=source, data_root=root / "data")
    return root / "data"


def test_a_retried_trainjob_step_is_not_blocked_by_its_own_job(noise_root, tmp_path):
    """A retried train_job step adopts the TrainJob of the attempt before (cluster/multinode.py),
    whose node still trains and holds the lock under a host name that starts with the job's name.
    That lock lets the retry's checks through; another pipeline run's lock does not."""
    values = dict(
        dataset="fashion-mnist",
        epochs=1,
        batch_size=10,
        subset=20,
        test_subset=10,
        data_root=str(noise_root),
        progress=False,
        log_images_every=0,
    )
    root, tags = tmp_path / "checkpoints", {"kfp_run_id": "run-1"}
    out = prepare_run(root, "v1", tags=tags, **values).output_dir
    node = f"{job_name('run-1', out)}-node-0-0"
    write_lock(Path(out), run_id="abc", host=node, pid=12, heartbeat=time.time())
    assert prepare_run(root, "v1", tags=tags, **values).output_dir == out
    with pytest.raises(RunLockError, match=f"process 12 on host {node}"):
        prepare_run(root, "v1", tags={"kfp_run_id": "run-2"}, **values)
    assert read_lock(Path(out) / LOCK_NAME)["host"] == node  # checked, not taken
