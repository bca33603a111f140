"""A train step's failure, recorded so that a retry does not repeat what will recur.

The pipeline retries its train step (pipeline/training.py) for what the infrastructure does: an
evicted pod, a lost node, a tracking server that did not answer. Bad input (an InputError) and a
network that diverged (a NonFiniteLossError) come back on every attempt, each one a new MLflow
run and minutes of training. So each attempt records its failure's one line in
CHECKPOINT_ROOT/.failures/, keyed by the pipeline run and the step's arguments; an attempt that
finds a failure that recurs recorded there fails at once with the same line, before it creates an
MLflow run or trains. A re-run (a new pipeline run) is not refused. The other failures are
recorded too, as not recurring, so that the local runner can name the cause of a failed run
(`failures_since`), which kfp.local reports only as "Inner task failed"."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Iterator

from ..errors import InputError, RunFailure, exit_status, one_line

log = logging.getLogger("adautomix.steps")

FOLDER = ".failures"


def failure_record(
    checkpoint_root: str | Path, tags: dict[str, str] | None, arguments: dict[str, Any]
) -> Path | None:
    """Where an attempt of the step with `arguments` in the pipeline run that `tags` name records
    its failure; None outside a pipeline run (nothing retries it)."""
    run_id = (tags or {}).get("kfp_run_id", "")
    if not run_id:
        return None
    digest = hashlib.sha256(
        json.dumps(arguments, sort_keys=True, default=str).encode()
    ).hexdigest()[:12]
    return Path(checkpoint_root) / FOLDER / f"{run_id}-{digest}.json"


@contextlib.contextmanager
def recorded_failures(
    checkpoint_root: str | Path, tags: dict[str, str] | None, arguments: dict[str, Any]
) -> Iterator[None]:
    """Within the block: fail at once if an earlier attempt recorded a failure that recurs, and
    record the block's own failure, if it fails with one line the user reads."""
    record = failure_record(checkpoint_root, tags, arguments)
    if record is None:
        yield
        return
    if record.exists():
        earlier = json.loads(record.read_text())
        if earlier["recurs"]:
            log.warning(
                "an earlier attempt of this step in pipeline run %s failed on what a retry "
                "cannot change (%s): failing at once",
                tags["kfp_run_id"],
                record,
            )
            kind = InputError if earlier["status"] == 2 else RunFailure
            raise kind(earlier["error"])
    try:
        yield
    except Exception as exc:
        status = exit_status(exc)
        if status is not None:
            record.parent.mkdir(parents=True, exist_ok=True)
            line = one_line(exc).removeprefix("error: ")
            record.write_text(json.dumps({"error": line, "status": status, "recurs": recurs(exc)}))
        raise


def recurs(exc: BaseException) -> bool:
    """Whether a retry of the same step would fail the same way: bad input, or a diverged loss
    (the run is deterministic from its seed; a diverged run is not checkpointed). Not a folder
    locked by a run still beating: the attempt before, whose lock a retry takes over."""
    from ..engine.loss_guard import NonFiniteLossError
    from ..engine.run_lock import RunLockError

    if isinstance(exc, RunLockError):
        return False
    return isinstance(exc, (InputError, NonFiniteLossError))


def failures_since(checkpoint_root: str | Path, since: float) -> list[str]:
    """The lines of the failures recorded under `checkpoint_root` since `since` (time.time()),
    oldest first."""
    folder = Path(checkpoint_root) / FOLDER
    found = [
        (path.stat().st_mtime, json.loads(path.read_text())["error"])
        for path in (folder.glob("*.json") if folder.is_dir() else ())
        if path.stat().st_mtime >= since
    ]
    return [line for _, line in sorted(found)]
