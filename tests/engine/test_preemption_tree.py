"""A preempted pod through its real process tree, as Argo's executor ends it: SIGTERM to the
whole process group, whose first process (the KFP launcher, which has no handler) dies at once;
the container's PID 1 then exits and the kernel SIGKILLs whatever is left, the trainer mid-step
or mid-write. The SIGTERM checkpoint never lands there; the periodic one (`checkpoint_minutes`)
is what bounds the work lost: it must be whole however the kill caught its successor's write, and
the resume must train only what came after it (that such a resume ends exactly where an
uninterrupted run does is test_resume.py's)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

import adautomix.engine.train as engine
from adautomix.data import prepare
from adautomix.engine.checkpoint import TEMP_PREFIX, TEMP_SUFFIX, load_checkpoint
from tests.data.fixtures import make_fashion_mnist
from tests.helpers import small_run

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
STEPS, BATCH = 10, 10  # one epoch of 10 optimiser steps
# `adautomix train` on a disk slow enough that a kill lands mid-write (as on a network volume,
# where a real checkpoint takes seconds): each file torch writes goes out in 8 parts, 0.05 s apart.
SLOW_DISK_TRAIN = """
import io, os, sys, time
import torch
from adautomix.cli import main

save = torch.save

def slowly(obj, f, *args, **kwargs):
    buffer = io.BytesIO()
    save(obj, buffer, *args, **kwargs)
    data = buffer.getvalue()
    out = open(f, "wb") if isinstance(f, (str, os.PathLike)) else f
    part = len(data) // 8 + 1
    for start in range(0, len(data), part):
        out.write(data[start : start + part])
        out.flush()
        time.sleep(0.05)
    if out is not f:
        out.close()

torch.save = slowly
sys.exit(main(sys.argv[1:]))
"""
# The launcher's stand-in: it starts the step and dies on SIGTERM (no handler), as KFP's does.
LAUNCHER = """
import subprocess, sys
step = subprocess.Popen(sys.argv[1:])
print(step.pid, flush=True)
sys.exit(step.wait())
"""


def gone(pid: int) -> bool:
    """Whether `pid` has ended (a zombie has: it runs no more code)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


def kill_while_writing(run_dir: Path, launcher: subprocess.Popen, deadline: float) -> None:
    """Once a checkpoint exists, end the tree as the executor does the moment the next write is
    in progress (its temporary file exists, or the checkpoint itself is being rewritten), so the
    kill lands mid-write."""
    checkpoint = run_dir / "checkpoint.pt"
    while not checkpoint.exists():
        assert launcher.poll() is None, "the run ended before any checkpoint within its epoch"
        assert time.monotonic() < deadline, "no checkpoint within the timeout"
        time.sleep(0.01)
    size = checkpoint.stat().st_size
    while not any(run_dir.glob(f"{TEMP_PREFIX}*{TEMP_SUFFIX}")):
        assert launcher.poll() is None, "the run ended before a write could be caught"
        if checkpoint.stat().st_size != size:  # being written in place
            break
        time.sleep(0.01)
    os.killpg(launcher.pid, signal.SIGTERM)  # the executor: the whole group
    launcher.wait(timeout=10)  # no handler: it dies at once
    os.killpg(launcher.pid, signal.SIGKILL)  # PID 1 gone: the kernel kills the rest


def test_a_process_group_killed_as_the_executor_does_loses_only_what_followed_the_last_checkpoint(
    mlflow_http, tmp_path, monkeypatch
):
    # a few noise images: the test is about the processes, not the learning
    source = make_fashion_mnist(tmp_path / "raw", n_train=BATCH * STEPS + 10, n_test=10)
    prepare("fashion-mnist", source=source, data_root=tmp_path / "data")
    # every step: a mid-epoch checkpoint lands as soon as training starts
    config = small_run(
        tmp_path / "data",
        tmp_path / "killed",
        "test-preemption-tree",
        method="mixup",
        model_width=8,
        batch_size=BATCH,
        val_size=10,
        lr=0.05,
        checkpoint_minutes=1e-9,
    )
    config.save(tmp_path / "killed.json")
    launcher = subprocess.Popen(
        [
            sys.executable,
            "-c",
            LAUNCHER,
            sys.executable,
            "-c",
            SLOW_DISK_TRAIN,
            "train",
            "--config",
            str(tmp_path / "killed.json"),
        ],
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "2"},
        start_new_session=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    trainer = int(launcher.stdout.readline())
    try:
        kill_while_writing(tmp_path / "killed", launcher, time.monotonic() + 300)
    finally:
        try:
            os.killpg(launcher.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        launcher.wait()
    deadline = time.monotonic() + 10
    while not gone(trainer):
        assert time.monotonic() < deadline, "the trainer outlived SIGKILL"
        time.sleep(0.05)

    # what the kill left: a whole checkpoint from within the epoch, however the write went
    interrupted = load_checkpoint(tmp_path / "killed")
    assert 0 < interrupted["epoch_step"] < STEPS and interrupted["epoch"] == 0

    resumed_steps: list[int] = []
    build_method = engine.create_method

    def counting_method(*args, **kwargs):
        method = build_method(*args, **kwargs)
        after = method.after_optimizer_step

        def after_optimizer_step(model, step, total_steps):
            resumed_steps.append(step)
            after(model, step, total_steps)

        method.after_optimizer_step = after_optimizer_step
        return method

    monkeypatch.setattr(engine, "create_method", counting_method)
    # others may edit the working tree meanwhile, which changes a dirty tree's code version
    resumed = engine.train(config, resume=True, allow_code_change=True)
    # the resume trains only what came after the last periodic checkpoint
    assert resumed_steps == list(range(interrupted["step"], STEPS))
    assert not list((tmp_path / "killed").glob(f"{TEMP_PREFIX}*{TEMP_SUFFIX}"))
    # one MLflow run, continued to its end: test_resume.py shows such a resume ends in exactly
    # the uninterrupted run's state
    assert resumed.run_id == interrupted["run_id"] and len(resumed.history) == 1
    assert MlflowClient(mlflow_http).get_run(resumed.run_id).info.status == "FINISHED"
