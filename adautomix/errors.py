"""The two kinds of failure a user is told about in one line (by the CLIs, and by a pipeline
step's log), each error type of the package being one or the other:

- `InputError`: what was asked for cannot work (a config value, a dataset, a checkpoint file, a
  candidate model); the message names the thing at fault and the fix. Exit status 2.
- `RunFailure`: the input was fine but the run could not be done or went wrong (a tracking
  server that does not answer, a loss that became NaN, a cluster that refused the run). Exit
  status 1.

Anything else is a bug, and its traceback is the report."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from typing import Iterator


class InputError(ValueError):
    """Bad input; the message names it and the fix."""


class RunFailure(RuntimeError):
    """A run that could not be done or went wrong; the message says what happened."""


# Set to 1 (or pass --debug to a CLI) for the traceback behind an `error:` line.
DEBUG_ENV = "ADAUTOMIX_DEBUG"


def debug_requested(flag: bool = False) -> bool:
    return flag or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def exit_status(exc: BaseException) -> int | None:
    """2 for bad input (an InputError; a missing or malformed file of the user's), 1 for a run
    that failed (a RunFailure; an OS error such as a full disk), None for a bug."""
    if isinstance(
        exc,
        (
            InputError,
            FileNotFoundError,
            NotADirectoryError,
            IsADirectoryError,
            json.JSONDecodeError,
        ),
    ):
        return 2
    if isinstance(exc, (RunFailure, OSError)):
        return 1
    return None


def one_line(exc: BaseException) -> str:
    """`error: ...` for `exc`: its message on one line, credentials masked."""
    from .redact import redact

    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, OSError) and exc.filename and not isinstance(exc, InputError):
        text = f"{exc.strerror or type(exc).__name__}: {exc.filename}"
        if isinstance(exc, FileNotFoundError):
            text += " (check the path)"
        elif isinstance(exc, PermissionError):
            text += " (check its permissions, or write somewhere else)"
    return f"error: {redact(text)}"


@contextlib.contextmanager
def exit_on_error() -> Iterator[None]:
    """For a pipeline step: an error the user can act on ends the process with its one line on
    stderr and its exit status, as the CLIs do, instead of a traceback in the step's log."""
    try:
        yield
    except Exception as exc:
        status = exit_status(exc)
        if status is None or debug_requested():
            raise
        print(one_line(exc), file=sys.stderr, flush=True)
        raise SystemExit(status) from None
