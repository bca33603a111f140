"""SIGTERM as a request to stop at the next safe place, not a kill.

Kubernetes sends SIGTERM to a pod it evicts or preempts and SIGKILL after the pod's grace period.
While `train` runs, the first SIGTERM only sets a flag: the loop writes a checkpoint at the next
step boundary (engine/train.py) and raises `Preempted`, whose one line says where the run stopped
and exit status 1 lets a retry resume it. A second SIGTERM ends the process at once, as the
default action would."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from typing import Iterator

from ..errors import RunFailure

log = logging.getLogger("adautomix.train")


class Preempted(RunFailure):
    """The run was asked to stop (SIGTERM) and stopped after writing a checkpoint."""


class StopRequest:
    """Set by the handler; read by the training loop."""

    def __init__(self) -> None:
        self.requested = False
        self.signal_name = ""


@contextlib.contextmanager
def stop_on_sigterm() -> Iterator[StopRequest]:
    """Within the block, SIGTERM sets the request's flag (in the main thread; elsewhere no
    handler can be installed and the request stays unset)."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def handle(signum, frame) -> None:
        if request.requested:  # asked twice: stop now
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        request.requested, request.signal_name = True, signal.Signals(signum).name
        log.warning(
            "%s received: stopping at the next step boundary after a checkpoint",
            request.signal_name,
        )

    previous = signal.signal(signal.SIGTERM, handle)
    try:
        yield request
    finally:
        signal.signal(signal.SIGTERM, previous)
