"""SIGTERM as a request to stop at the next safe place, not a kill.

Kubernetes sends SIGTERM to a pod it evicts or preempts and SIGKILL after the pod's grace period.
While `train` runs, the first SIGTERM only sets a flag: the loop writes a checkpoint at the next
step boundary (engine/train.py) and raises `Preempted`, whose one line says where the run stopped
and exit status 1 lets a retry resume it. A second SIGTERM ends the process at once, as the
default action would.

A process that only starts the trainers (the train step that starts torchrun) passes the signal
on instead (`run_passing_on_signals`): once, to a child in a session of its own, which a signal
to the step's process group cannot reach, so that torchrun, which tells its workers once and
then waits for them, is not told twice.

None of this is what bounds a preempted pod's loss: in a Kubeflow Pipelines pod, Argo's executor
signals the whole process group, the KFP launcher (no handler) dies at once, the container's
PID 1 exits after it and the kernel kills everything left, the trainer mid-step. What such a pod
loses is what came after the last periodic checkpoint (`checkpoint_minutes`;
docs/reliability.md)."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
from typing import Iterator, Sequence

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


PASSED_ON = (signal.SIGTERM, signal.SIGINT)
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def run_passing_on_signals(command: Sequence[str]) -> tuple[int, str]:
    """Run `command` to its end, passing on to it the first SIGTERM or SIGINT this process gets
    while it runs (in the main thread; elsewhere none can be caught), and waiting for it to stop;
    returns its exit status and the name of the signal passed on ('' if none was).

    The child runs in a session of its own, so a signal to this process's group reaches it only
    through here, once; and it gets SIGTERM if this process dies first (a SIGKILL runs no
    handler), so that it stops at its next checkpoint instead of training on, orphaned."""
    passed: list[signal.Signals] = []
    child: subprocess.Popen | None = None

    def pass_on(signum, frame) -> None:
        if passed:  # already on its way: a second one would cut the child's shutdown short
            return
        passed.append(signal.Signals(signum))
        log.warning(
            "%s received: passed on to %s, waiting for it to stop", passed[0].name, command[0]
        )
        if child is not None:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signum)

    handling = threading.current_thread() is threading.main_thread()
    previous = {s: signal.signal(s, pass_on) for s in PASSED_ON} if handling else {}
    try:
        child = subprocess.Popen(command, start_new_session=True, preexec_fn=_ended_with_parent())
        if passed:  # it came while the child was starting
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(passed[0])
        return child.wait(), passed[0].name if passed else ""
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _ended_with_parent():
    """What makes a child get SIGTERM when this process ends (Linux's parent-death signal); None
    where there is none. The function is looked up here: only the call runs in the child."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # libc's, linked into the interpreter
    parent = os.getpid()

    def in_child() -> None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM))
        if os.getppid() != parent:  # the parent died before the line above
            os.kill(os.getpid(), signal.SIGTERM)

    return in_child
