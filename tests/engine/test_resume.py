"""A run killed mid-epoch (SIGKILL, no clean-up) and resumed ends in exactly the state of a run
that was never interrupted: the online network, the method's own networks (the EMA teacher with
its BN statistics, the generator or mix block, both heads), the engine's EMA, the optimiser's
state, the RNG streams, the step counter that decides the adversarial/cooperative alternation,
the history, and one MLflow run holding each epoch once; from the last epoch's checkpoint, or
from the last checkpoint taken within the epoch (checkpoint_minutes), which skips the batches
the epoch already trained.

The engine builds the small TinyBackbone instead of ResNet-18 (as in test_adautomix.py), so an
AdAutoMix run of two short epochs takes seconds. The killed run is a child process that sends
itself SIGKILL right after a chosen optimiser step in the middle of epoch 2."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

import adautomix.engine.train as engine
from adautomix.config import TEACHER_METHODS
from adautomix.engine.checkpoint import load_checkpoint
from tests.tiny_backbone import TinyBackbone
from tests.helpers import assert_same, small_run

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
STEPS_PER_EPOCH = 4
KILL_AFTER_STEP = STEPS_PER_EPOCH + 1  # the second step of epoch 2 (steps count from 0)

# The child: the same engine with the tiny backbone, killed after optimiser step KILL_AT.
CHILD = """
import os, signal, sys
import torch
torch.set_num_threads(2)
import adautomix.engine.train as engine
from adautomix.config import RunConfig
from tests.tiny_backbone import TinyBackbone

kill_at = int(sys.argv[2])
engine.create_model = lambda name, num_classes, in_chans, pretrained, width: TinyBackbone(
    num_classes, in_chans)
build_method = engine.create_method

def create_method(*args, **kwargs):
    method = build_method(*args, **kwargs)
    after = method.after_optimizer_step
    def after_optimizer_step(model, step, total_steps):
        after(model, step, total_steps)
        if step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
    method.after_optimizer_step = after_optimizer_step
    return method

engine.create_method = create_method
engine.train(RunConfig.load(sys.argv[1]))
"""


def run_killed_child(config_path, kill_after_step):
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-c", CHILD, str(config_path), str(kill_after_step)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "2", "PYTHONPATH": path},
    )


def tiny_engine(monkeypatch):
    monkeypatch.setattr(
        engine,
        "create_model",
        lambda name, num_classes, in_chans, pretrained, width: TinyBackbone(num_classes, in_chans),
    )


def without_timing(history):
    timing = ("images_per_sec", "train_seconds", "eval_seconds")
    return [{k: v for k, v in epoch.items() if k not in timing} for epoch in history]


@pytest.mark.parametrize(
    "method, options",
    [
        ("adautomix", {"mix_samples": 3, "teacher_momentum": 0.9, "end_momentum": 0.99}),
        ("automix", {"teacher_momentum": 0.9, "end_momentum": 0.99}),
        ("mixup", {}),  # no teacher of its own, so the engine keeps its EMA
    ],
)
def test_a_run_killed_mid_epoch_resumes_to_the_uninterrupted_state(
    method, options, fmnist_root, mlflow_sqlite, tmp_path, monkeypatch
):
    tiny_engine(monkeypatch)
    common = dict(
        method=method,
        method_args=options,
        epochs=2,
        subset=16 * STEPS_PER_EPOCH,
        test_subset=16,
        batch_size=16,
        lr=0.05,
        deterministic=True,
        **({} if method in TEACHER_METHODS else {"ema_decay": 0.9}),
    )
    reference = engine.train(
        small_run(fmnist_root, tmp_path / "reference", "test-resume-learned", **common)
    )

    config = small_run(fmnist_root, tmp_path / "killed", "test-resume-learned", **common)
    config.save(tmp_path / "killed.json")
    child = run_killed_child(tmp_path / "killed.json", KILL_AFTER_STEP)
    assert child.returncode == -signal.SIGKILL, child.stderr[-3000:]
    interrupted = load_checkpoint(tmp_path / "killed")
    assert interrupted["epoch"] == 1 and interrupted["step"] == STEPS_PER_EPOCH  # mid-epoch 2

    resumed = engine.train(config, resume=True)
    final = load_checkpoint(tmp_path / "killed")
    expected = load_checkpoint(tmp_path / "reference")
    for key in ("model", "method", "ema", "optimizer", "scaler", "rng", "epoch", "step"):
        assert_same(final[key], expected[key], key)
    assert without_timing(final["history"]) == without_timing(expected["history"])
    if method == "mixup":
        assert final["ema"] is not None and final["method"] == {}
    else:
        # the teacher's BN statistics are part of what must match, and the method has no engine EMA
        assert final["ema"] is None
        assert any(k.startswith("net_k.") and k.endswith("running_var") for k in final["method"])

    # one MLflow run, each epoch logged once, with the uninterrupted run's values
    assert resumed.run_id == interrupted["run_id"]
    client = MlflowClient(mlflow_sqlite)
    history = client.get_metric_history(resumed.run_id, "test_top1")
    assert sorted(m.step for m in history) == [1, 2]
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == [
        m.value
        for m in sorted(
            client.get_metric_history(reference.run_id, "test_top1"), key=lambda m: m.step
        )
    ]
    assert client.get_run(resumed.run_id).info.status == "FINISHED"


def test_a_run_killed_after_a_step_checkpoint_resumes_mid_epoch_to_the_uninterrupted_state(
    fmnist_root, mlflow_sqlite, tmp_path, monkeypatch
):
    tiny_engine(monkeypatch)
    common = dict(
        method="adautomix",
        method_args={"mix_samples": 3, "teacher_momentum": 0.9, "end_momentum": 0.99},
        epochs=2,
        subset=16 * STEPS_PER_EPOCH,
        test_subset=16,
        batch_size=16,
        lr=0.05,
        deterministic=True,
    )
    # checkpoints every epoch only: computing the same as every 60 ns, which is every step
    reference = engine.train(
        small_run(
            fmnist_root, tmp_path / "reference", "test-resume-step", checkpoint_minutes=0, **common
        )
    )

    config = small_run(
        fmnist_root, tmp_path / "killed", "test-resume-step", checkpoint_minutes=1e-9, **common
    )
    config.save(tmp_path / "killed.json")
    child = run_killed_child(tmp_path / "killed.json", KILL_AFTER_STEP + 1)
    assert child.returncode == -signal.SIGKILL, child.stderr[-3000:]
    interrupted = load_checkpoint(tmp_path / "killed")
    # killed during the third step of epoch 2, checkpointed after its second
    assert (interrupted["epoch"], interrupted["epoch_step"], interrupted["step"]) == (
        1,
        2,
        STEPS_PER_EPOCH + 2,
    )

    resumed = engine.train(config, resume=True)
    final = load_checkpoint(tmp_path / "killed")
    expected = load_checkpoint(tmp_path / "reference")
    for key in ("model", "method", "ema", "optimizer", "scaler", "rng", "epoch", "step"):
        assert_same(final[key], expected[key], key)
    assert without_timing(final["history"]) == without_timing(expected["history"])
    assert resumed.run_id == interrupted["run_id"]
    client = MlflowClient(mlflow_sqlite)
    for metric in ("train_loss", "test_top1"):
        assert [m.value for m in client.get_metric_history(resumed.run_id, metric)] == [
            m.value for m in client.get_metric_history(reference.run_id, metric)
        ], metric
