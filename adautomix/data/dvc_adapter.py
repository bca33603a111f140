"""The DVC adapter: the one module that imports DVC.

`versioning.py` decides what a data version needs (which .dvc file, pull or prepare here, the
errors a user reads); this module says how DVC does each part. DVC's Python API beyond `dvc.api`
is not a stable interface (a stage's outputs and their status calls, the cache's layout move
between releases), so every call into it sits here, and tests/data/test_dvc_adapter.py runs each
against a real repository: a DVC upgrade that changes one fails there, by name.

DVC is imported inside `open_repo`, not at the top: checking and compiling a pipeline reads .dvc
files only (versioning.py does that with yaml), and importing DVC costs about a second.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# DVC 3's object layout, in its cache and in every remote: files/md5/AB/CDEF... for hash ABCDEF...
OBJECTS = "files/md5"
ANSI_COLOUR = re.compile(r"\x1b\[[0-9;]*m")  # DVC colours its links even off a terminal


class DvcFailure(Exception):
    """A DVC operation failed (no such object in the remote, no access, ...); the message is
    DVC's own, on one line."""


@dataclass(frozen=True)
class BadObject:
    """A cached object whose bytes do not hash to its name."""

    relpath: str  # the file inside the dataset folder ('' for the directory listing)
    md5: str  # the name: the hash the bytes should have
    cached: Path  # the copy in this workspace's cache


@contextmanager
def open_repo(workspace: str | Path) -> Iterator[DvcRepo]:
    from dvc.repo import Repo

    with Repo(str(workspace)) as repo:
        yield DvcRepo(repo)


class DvcRepo:
    """A DVC repository, as much of it as versioning.py needs."""

    def __init__(self, repo: Any):
        self._repo = repo
        self.root = Path(repo.root_dir)

    def output_state(self, dvc_file: Path) -> str:
        """The one output of `dvc_file`: 'ok' (the data has the recorded bytes and is cached),
        'uncached' (it has them but no cache holds them), 'modified' (it has other bytes) or
        'missing' (it is not there)."""
        (out,) = self._repo.stage.load_one(str(dvc_file)).outs
        # Hash the data itself: DVC's own status says "not in cache" before it compares bytes.
        workspace = set(out.workspace_status().values())
        if workspace:
            return "missing" if "deleted" in workspace else "modified"
        return "uncached" if out.changed_cache() else "ok"

    def pull(self, dvc_file: Path, remote: str | None) -> None:
        """Fetch the output's objects from `remote` (None: the default) and check them out."""
        with _as_failure():
            self._repo.pull(targets=[str(dvc_file)], remote=remote)

    def push(self, dvc_file: Path, remote: str | None) -> None:
        with _as_failure():
            self._repo.push(targets=[str(dvc_file)], remote=remote)

    def commit(self, dvc_file: Path) -> None:
        """Record the data's bytes now in `dvc_file` and keep them in the cache."""
        with _as_failure():
            self._repo.commit(str(dvc_file), force=True)

    def remote_name(self, remote: str | None) -> str | None:
        """`remote`, or the default remote's name when None or ''."""
        return remote or self._repo.config["core"].get("remote")

    def remote_settings(self, remote: str | None) -> dict[str, Any]:
        """The config section of `remote` (None: the default one); DVC gives a local folder's
        url as an absolute path. Empty when there is no such remote."""
        name = self.remote_name(remote)
        return dict(self._repo.config["remote"].get(name, {})) if name else {}

    def cached_object(self, md5: str) -> Path:
        return Path(self._repo.cache.local.oid_to_path(md5))

    def bad_objects(self, version: str) -> list[BadObject]:
        """The cached objects of directory version `version` (its listing and every file it
        names) whose bytes do not hash to their names. DVC does not check what it downloads
        (a remote's `verify` is off by default), so a corrupt object in a remote reaches the
        cache under its good name, and every checkout from there gives the same bad bytes."""
        listing = self.cached_object(version)
        if not listing.exists():
            return []
        bad = (
            []
            if _md5(listing) == version.removesuffix(".dir")
            else [BadObject("", version, listing)]
        )
        if bad:
            return bad
        for entry in json.loads(listing.read_bytes()):
            cached = self.cached_object(entry["md5"])
            if cached.exists() and _md5(cached) != entry["md5"]:
                bad.append(BadObject(entry["relpath"], entry["md5"], cached))
        return bad


def remote_object(url: str, md5: str) -> str:
    """Where a remote at `url` keeps the object named `md5`."""
    return f"{url.rstrip('/')}/{OBJECTS}/{md5[:2]}/{md5[2:]}"


# Loggers of DVC and of the S3 client under it: on a failure they log tracebacks and every
# retry (over a hundred lines for an endpoint that is down), to whatever handler the step has.
LIBRARY_LOGGERS = (
    "dvc",
    "dvc_data",
    "dvc_objects",
    "fsspec",
    "s3fs",
    "botocore",
    "aiobotocore",
    "boto3",
    "urllib3",
)


class _Kept(logging.Handler):
    """Keeps the one-line message of each warning or error, without its traceback."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        line = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            line = f"{line} - {record.exc_info[1]}"
        self.lines.append(" ".join(ANSI_COLOUR.sub("", line).split()))


@contextmanager
def quiet_libraries() -> Iterator[list[str]]:
    """Within the block the libraries' log records reach no handler; their warnings and errors
    are kept, one line each, in the list it yields (what a failure's message names)."""
    kept = _Kept()
    saved = []
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, logger.handlers[:], logger.propagate))
        logger.handlers[:] = [kept]
        logger.propagate = False
    try:
        yield kept.lines
    finally:
        for logger, handlers, propagate in saved:
            logger.handlers[:] = handlers
            logger.propagate = propagate


@contextmanager
def _as_failure() -> Iterator[None]:
    """DVC's errors as a DvcFailure of one line, which names what DVC logged as the cause (its
    exception says only '1 files failed to download'), and none of the libraries' tracebacks."""
    from dvc.exceptions import DvcException

    with quiet_libraries() as logged:
        try:
            yield
        except DvcException as error:
            text = " ".join(ANSI_COLOUR.sub("", str(error)).split()) or type(error).__name__
            cause = next((line for line in logged if line and line not in text), "")
            raise DvcFailure(f"{text}: {cause}" if cause else text) from error


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
