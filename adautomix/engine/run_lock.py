"""One run at a time in an output folder.

A run that trains into a folder holds `run.lock` there: a small JSON file naming its owner (the
MLflow run, the host and the process) and a heartbeat time that a thread of the owner refreshes
every HEARTBEAT_SECONDS. A second run into the folder stops with a RunLockError naming the first,
before it writes anything. A lock whose owner is gone is taken over: on the same host when its
process no longer exists, on any host when its heartbeat is older than STALE_SECONDS.

The window is a minute because a pipeline step's retry comes on another pod, which cannot look
into the dead attempt's host: an OOMKill, a SIGKILL after the grace period or a lost node leaves
a lock with a fresh heartbeat, and the retry (30 s later) must not fail for it. A start that finds
an owner who has missed beats (heartbeat older than two of them) waits until it beats again (a
live run: the start fails) or goes stale (taken over), saying so, rather than failing at once.
Host clocks must agree within about half a minute (NTP does far better).

A retried TrainJob step adopts the job of the attempt before (cluster/multinode.py), whose node
holds the lock under a host name that starts with the job's name: `check_free(adopting=...)`
lets such a lock through, so the retry is not blocked by the run it comes to wait for.

The lock file is created whole or not at all (written aside, then hard-linked to its name, which
fails if the name exists); a takeover moves the stale file aside first, so of two runs that find
the same stale lock only one takes it."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from ..errors import InputError

log = logging.getLogger("adautomix.train")

LOCK_NAME = "run.lock"
HEARTBEAT_SECONDS = 15.0
# Four missed beats: a dead owner, not one slow write to a network volume.
STALE_SECONDS = 60.0


class RunLockError(InputError):
    """Another run is training into the same folder; the message names it."""


class RunLock:
    """The lock this process holds on `folder`; `release` ends it (and its heartbeat)."""

    def __init__(self, folder: Path, owner: dict[str, Any]):
        self.folder, self.owner = folder, owner
        self._stop = threading.Event()
        self._beat = threading.Thread(
            target=self._heartbeat, daemon=True, name=f"run-lock-heartbeat {folder}"
        )
        self._beat.start()

    @property
    def path(self) -> Path:
        return self.folder / LOCK_NAME

    def set_run_id(self, run_id: str | None) -> None:
        """Name the MLflow run once it is known (the lock is taken before MLflow is opened)."""
        self.owner["run_id"] = run_id or ""
        self._refresh()

    def release(self) -> None:
        self._stop.set()
        if self._owned():
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            with contextlib.suppress(OSError):
                self._refresh()

    def _owned(self) -> bool:
        current = read_lock(self.path)
        return current is not None and current.get("token") == self.owner["token"]

    def _refresh(self) -> None:
        if self._owned():  # a lock taken over while this process stood still is not ours
            self.owner["heartbeat"] = time.time()
            _write_aside_then(self.folder, self.owner, lambda tmp: os.replace(tmp, self.path))


def acquire(folder: str | Path, run_id: str | None = None) -> RunLock:
    """Hold the lock on `folder` (which must exist), taking over a stale one; a RunLockError
    naming the owner if a live run holds it."""
    folder = Path(folder)
    owner = {
        "run_id": run_id or "",
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": time.time(),
        "heartbeat": time.time(),
        "token": uuid.uuid4().hex,
    }
    for _ in range(3):  # another run may take or free it between our looks
        if _create(folder, owner):
            return RunLock(folder, owner)
        current, live = _look(folder / LOCK_NAME)
        if current is None:
            continue
        if live:
            raise _in_use(folder, current)
        _take_over(folder, current)
    raise RunLockError(
        f"{folder}: the run lock {folder / LOCK_NAME} keeps changing hands; "
        "another run is starting there. Train into another --output-dir"
    )


def check_free(folder: str | Path, adopting: str = "") -> None:
    """A RunLockError if a live run holds `folder`'s lock (nothing is taken or written), unless
    its host name starts with `adopting`: the pods of a job this start adopts."""
    current, live = _look(Path(folder) / LOCK_NAME)
    if not live:
        return
    if adopting and str(current.get("host", "")).startswith(adopting):
        log.info("%s is held by %s, the job this step adopts", folder, describe(current))
        return
    raise _in_use(Path(folder), current)


def _in_use(folder: Path, owner: dict[str, Any]) -> RunLockError:
    if owner.get("unreadable"):
        path = folder / LOCK_NAME
        return RunLockError(
            f"{path} names no run (empty or not JSON, last written {_age(owner):.0f} s ago), so "
            f"{folder} counts as in use until it is {STALE_SECONDS:.0f} s old; if no run trains "
            f"in {folder}, delete {path}"
        )
    return RunLockError(
        f"{folder} is in use by another run ({describe(owner)}); wait for it to end, stop it, "
        "or train into another --output-dir. A lock whose owner is gone is taken over by the "
        f"next start once its heartbeat is {STALE_SECONDS:.0f} s old"
    )


def _look(path: Path) -> tuple[dict[str, Any] | None, bool]:
    """The lock's owner (None: no lock) and whether it is live. An owner that has missed beats
    is watched until it beats again (live) or goes stale: a retry that comes soon after its
    attempt died takes over then, and a live owner whose beats look late (a slow volume, a
    clock behind ours) is not taken for dead."""
    current = read_lock(path)
    if current is None or is_stale(current):
        return current, False
    if _age(current) <= 2 * HEARTBEAT_SECONDS:
        return current, True
    log.warning(
        "waiting for %s: its owner (%s) has missed its beats; taken over once it is %.0f s "
        "old, unless it beats again",
        path,
        describe(current),
        STALE_SECONDS,
    )
    while True:
        time.sleep(min(HEARTBEAT_SECONDS / 3, max(STALE_SECONDS - _age(current), 0) + 0.01))
        seen = read_lock(path)
        if seen is None or is_stale(seen):
            return seen, False
        if seen != current:  # it beat, or another run took it: either way a live owner
            return seen, True


def _age(owner: dict[str, Any]) -> float:
    return time.time() - owner.get("heartbeat", 0)


def read_lock(path: Path) -> dict[str, Any] | None:
    """The lock's owner; None when there is no lock. A lock file that says nothing readable (one
    being written where there are no hard links, or garbage) has an unknown owner whose heartbeat
    is the file's modification time: stale once the file is older than STALE_SECONDS."""
    try:
        owner = json.loads(path.read_text())
        if isinstance(owner, dict):
            return owner
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        pass
    try:
        return {"unreadable": True, "heartbeat": path.stat().st_mtime}
    except FileNotFoundError:
        return None


def is_stale(owner: dict[str, Any], now: float | None = None) -> bool:
    """Whether the lock's owner is gone: its process has ended (same host), or its heartbeat
    is older than STALE_SECONDS (any host)."""
    heartbeat = owner.get("heartbeat")
    if not isinstance(heartbeat, (int, float)):
        return True
    if (now or time.time()) - heartbeat > STALE_SECONDS:
        return True
    if owner.get("host") == socket.gethostname():
        pid = owner.get("pid")
        if not isinstance(pid, int) or pid == os.getpid():  # a restart that got our pid back
            return True
        return _ended(pid)
    return False


def _ended(pid: int) -> bool:
    """Whether process `pid` of this host has ended. A zombie has: it runs no more code, but
    answers signals until its parent reaps it, which a container whose PID 1 does not reap
    orphans (a killed pod's launcher left them to it) never does."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # someone else's process: alive, or a zombie /proc shows
        pass
    if not Path("/proc/self/stat").exists():  # no /proc (macOS): signals are all there is
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:  # reaped since
        return True
    return state in ("Z", "X")


def describe(owner: dict[str, Any]) -> str:
    age = _age(owner)
    if owner.get("unreadable"):
        return f"an owner its lock file does not name, last written {age:.0f} s ago"
    run = f"MLflow run {owner['run_id']}, " if owner.get("run_id") else ""
    return f"{run}process {owner.get('pid')} on host {owner.get('host')}, alive {age:.0f} s ago"


def _create(folder: Path, owner: dict[str, Any]) -> bool:
    """Create the lock file whole, unless one exists; whether it was created."""

    def link(tmp: str) -> None:
        try:
            os.link(tmp, folder / LOCK_NAME)
        finally:
            os.unlink(tmp)

    try:
        _write_aside_then(folder, owner, link)
        return True
    except FileExistsError:
        return False
    except OSError:  # no hard links on this filesystem: create exclusively, then fill in
        try:
            fd = os.open(folder / LOCK_NAME, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            json.dump(owner, f)
        return True


def _write_aside_then(folder: Path, owner: dict[str, Any], finish) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".run-lock-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(owner, f)
        finish(tmp)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _take_over(folder: Path, stale: dict[str, Any]) -> None:
    """Remove the stale lock `stale`, unless another run replaced it meanwhile."""
    aside = folder / f".run-lock-stale-{uuid.uuid4().hex}"
    try:
        os.rename(folder / LOCK_NAME, aside)
    except FileNotFoundError:
        return  # another run took it over first
    moved = read_lock(aside)
    if moved is not None and not moved.get("unreadable") and moved != stale:
        # a fresh lock another run took between our look and the move: give it back
        with contextlib.suppress(FileExistsError):
            os.link(aside, folder / LOCK_NAME)
    aside.unlink()
