"""The train step with several GPUs is a process that only waits for torchrun. A SIGTERM for the
pod reaches it alone (the container's main process) or with its whole process group (Argo's
executor); either way torchrun's workers must get it exactly once, to checkpoint at their next
step boundary, and the step must wait for them and then fail in one line. Real torchrun, two
stand-in workers that stop as the trainer does (engine/preemption.py's handler)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# A worker that stops as the trainer does on SIGTERM: the first sets the flag it polls, a
# second kills it at once (before it can write `stopped-RANK`).
WORKER = """
import os, sys, time
from pathlib import Path
from adautomix.engine.preemption import stop_on_sigterm

folder, rank = Path(sys.argv[1]), os.environ["RANK"]
with stop_on_sigterm() as stop:
    (folder / f"pid-{rank}").write_text(f"{os.getpid()} {os.getppid()}")
    while not stop.requested:
        time.sleep(0.01)
    time.sleep(0.5)  # the checkpoint at the next step boundary
    (folder / f"stopped-{rank}").write_text(stop.signal_name)
sys.exit(1)
"""
# The train step's part once its run is prepared: torchrun's command line, run to its end.
STEP = """
import sys
from pathlib import Path
from adautomix.errors import exit_on_error
from adautomix.steps.train import run_ranks

with exit_on_error():
    run_ranks(sys.argv[2:], Path(sys.argv[1]), 2)
"""


@pytest.mark.parametrize("signalled", ["the step alone", "the process group"])
def test_a_sigterm_reaches_each_worker_once_and_the_step_waits_for_them(signalled, tmp_path):
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    log = tmp_path / "step.log"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1"]
    step = subprocess.Popen(
        [sys.executable, "-c", STEP, str(tmp_path), *torchrun, "--nproc_per_node", "2"]
        + [str(worker), str(tmp_path)],
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        start_new_session=True,  # a group of its own, as the launcher's in a pod
        stderr=log.open("w"),
    )
    started = [tmp_path / "pid-0", tmp_path / "pid-1"]
    try:
        deadline = time.monotonic() + 180
        while not all(p.exists() and p.read_text().count(" ") for p in started):
            assert step.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "torchrun's workers did not start"
            time.sleep(0.05)
        if signalled == "the step alone":
            os.kill(step.pid, signal.SIGTERM)
        else:
            os.killpg(step.pid, signal.SIGTERM)
        step.wait(timeout=60)
        err = log.read_text()
        # the step ended only after both workers stopped as asked, each told once
        assert [(tmp_path / f"stopped-{r}").read_text() for r in (0, 1)] == ["SIGTERM"] * 2
        assert step.returncode == 1, err[-3000:]
        assert (
            err.rstrip()
            .splitlines()[-1]
            .startswith("error: stopped by SIGTERM, passed on to torchrun's 2 processes")
        )
    finally:  # whatever a failure left running: the workers and torchrun
        for pids in started:
            for pid in pids.read_text().split() if pids.exists() else ():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(step.pid, signal.SIGKILL)
        step.wait()
