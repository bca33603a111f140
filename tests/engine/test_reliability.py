"""The training run under bad input and faults, for real: a run that diverges stops FAILED and
unsaved; a resume under another config or other code is refused before anything is written; a
second run into a folder stops, naming the first; bad values and bad checkpoints stop a run
before MLflow hears of it. On a tiny noise Fashion-MNIST in the real on-disk format."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

import adautomix
from adautomix.cli import main
from adautomix.config import ConfigError, RunConfig
from adautomix.data import DataError, content_hash, prepare
from adautomix.engine.checkpoint import CHECKPOINT_NAME, CheckpointError, load_checkpoint
from adautomix.engine.loss_guard import NonFiniteLossError
from adautomix.engine.run_lock import LOCK_NAME, RunLockError
from adautomix.engine.train import train
from adautomix.tracking import FAILURE_TAG
from tests.data import fixtures
from tests.helpers import onto_a_full_disk

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One MLflow store for the module (creating one costs seconds); each test its experiment."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        yield uri


@pytest.fixture
def experiment(request, store):
    return request.node.name[:60]


@pytest.fixture(scope="module")
def noise_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("noise")
    source = fixtures.make_fashion_mnist(root / "raw", n_train=100, n_test=50)
    prepare("fashion-mnist", source=source, data_root=root / "data")
    return root / "data"


def tiny(noise_root, out, experiment, **changes) -> RunConfig:
    values = dict(
        dataset="fashion-mnist",
        model="resnet18",
        model_width=8,  # the faults are the engine's, whatever the network's size
        method="vanilla",
        epochs=1,
        batch_size=10,
        subset=20,
        test_subset=10,
        lr=0.05,
        data_root=str(noise_root),
        output_dir=str(out),
        experiment=experiment,
        progress=False,
        log_images_every=0,
        num_workers=0,
    )
    return RunConfig(**{**values, **changes})


def runs(store: str, experiment: str):
    found = MlflowClient(store).get_experiment_by_name(experiment)
    return MlflowClient(store).search_runs([found.experiment_id]) if found else []


def test_a_diverging_run_stops_failed_and_is_not_checkpointed(
    noise_root, store, experiment, tmp_path, capsys
):
    config = tiny(noise_root, tmp_path / "run", experiment, lr=1e30)
    config.save(tmp_path / "huge-lr.json")
    assert main(["train", "--config", str(tmp_path / "huge-lr.json")]) == 1
    err = capsys.readouterr().err.splitlines()[-1]  # after MLflow's own log lines
    assert err.startswith("error: training stopped at step 2 (epoch 1): 1 non-finite training loss")
    assert "--lr (now 1e+30)" in err
    assert not (tmp_path / "run" / CHECKPOINT_NAME).exists()
    (run,) = runs(store, experiment)
    assert run.info.status == "FAILED" and "non-finite training loss" in run.data.tags[FAILURE_TAG]
    assert "val_top1" not in run.data.metrics  # no epoch was logged as if it had worked


def test_above_a_limit_of_one_bad_steps_are_skipped_until_the_limit(
    noise_root, experiment, tmp_path
):
    config = tiny(
        noise_root, tmp_path / "run", experiment, lr=1e30, subset=40, nonfinite_loss_limit=3
    )
    with pytest.raises(NonFiniteLossError, match="at step 4 .*3 non-finite training losses"):
        train(config)


def test_a_resume_under_a_changed_config_is_refused_before_anything_is_written(
    noise_root, store, experiment, tmp_path, caplog
):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".checkpoint-killed.tmp").write_bytes(b"\0" * 1000)  # a write a kill cut short
    with caplog.at_level(logging.INFO, logger="adautomix.train"):
        first = train(tiny(noise_root, out, experiment), resume=True)
    assert f"no {CHECKPOINT_NAME} in {out}" in caplog.text  # said in one line, then trained
    assert sorted(p.name for p in out.iterdir()) == [CHECKPOINT_NAME, "config.json"]
    written = {p.name: p.read_bytes() for p in out.iterdir()}

    for changes in ({"method": "mixup", "lr": 0.1}, {"model": "preactresnet18"}):
        with pytest.raises(ConfigError) as error:
            train(tiny(noise_root, out, experiment, epochs=2, **changes), resume=True)
        message = str(error.value)
        for field, value in changes.items():
            assert f"{field} " in message and repr(value) in message, message
        assert "epochs 1 in the checkpoint" not in message  # allowed; not a refusal
    assert {p.name: p.read_bytes() for p in out.iterdir()} == written  # nothing written

    extended = train(tiny(noise_root, out, experiment, epochs=2, num_workers=1), resume=True)
    assert extended.run_id == first.run_id and len(extended.history) == 2
    run = MlflowClient(store).get_run(first.run_id)
    assert run.info.status == "FINISHED" and run.data.params["epochs"] == "1"
    assert "epochs 1 -> 2" in run.data.tags["resume_changes"]
    assert json.loads((out / "config.json").read_text())["epochs"] == 2

    with pytest.raises(ConfigError, match="epochs 1 is fewer than the 2 the checkpoint has done"):
        train(tiny(noise_root, out, experiment, epochs=1), resume=True)


def test_resume_must_fails_without_a_checkpoint(noise_root, store, experiment, tmp_path):
    with pytest.raises(CheckpointError, match=f"--resume must: .* holds no {CHECKPOINT_NAME}"):
        train(tiny(noise_root, tmp_path / "empty", experiment), resume="must")
    assert not (tmp_path / "empty").exists() and runs(store, experiment) == []


def test_bad_values_stop_the_run_before_mlflow_hears_of_it(noise_root, store, experiment, tmp_path):
    with pytest.raises(ConfigError, match="'convnext_t' cannot take 28 px images"):
        train(tiny(noise_root, tmp_path / "a", experiment, model="convnext_t", model_width=0))
    root = tmp_path / "bad-labels"
    source = fixtures.make_fashion_mnist(root / "raw", n_train=100, n_test=50)
    manifest = prepare("fashion-mnist", source=source, data_root=root / "data")
    labels = np.load(manifest.root / "test_labels.npy")
    labels[0] = 12
    np.save(manifest.root / "test_labels.npy", labels)
    values = json.loads((manifest.root / "manifest.json").read_text())
    values["sha256"] = content_hash(manifest.root)  # re-signed: only the label check can tell
    (manifest.root / "manifest.json").write_text(json.dumps(values))
    with pytest.raises(DataError, match="test labels span 0..12"):
        train(tiny(root / "data", tmp_path / "b", experiment))
    assert runs(store, experiment) == []
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    assert load_checkpoint(tmp_path / "a") is None


def test_a_batch_smaller_than_mix_samples_is_refused_before_anything_is_written(
    noise_root, store, experiment, tmp_path, capsys
):
    config = tiny(
        noise_root,
        tmp_path / "run",
        experiment,
        method="adautomix",
        batch_size=2,
        method_args={"mix_samples": 3},
    )
    config.save(tmp_path / "small-batch.json")
    assert main(["train", "--config", str(tmp_path / "small-batch.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "error: batch_size 2 is smaller than method 'adautomix' needs (3: it mixes "
        "that many images into each sample); raise the batch size or lower the "
        "method's mix_samples"
    ]
    assert not (tmp_path / "run").exists() and runs(store, experiment) == []


def test_train_loss_is_the_mean_over_the_steps_that_counted(
    noise_root, store, experiment, tmp_path, monkeypatch
):
    """Step 2 of 4 gets a NaN loss and is skipped (limit 3): the epoch's loss is the mean of the
    three others, as recorded here, not their sum over four."""
    import adautomix.engine.train as engine

    counted, build = [], engine.create_method

    def create_method(*args, **kwargs):
        method = build(*args, **kwargs)
        step_of = method.training_step

        def training_step(model, images, labels, step):
            loss, extra = step_of(model, images, labels, step)
            if step == 1:
                return loss * float("nan"), extra
            counted.append(loss.item())
            return loss, extra

        method.training_step = training_step
        return method

    monkeypatch.setattr(engine, "create_method", create_method)
    result = train(
        tiny(noise_root, tmp_path / "run", experiment, subset=40, nonfinite_loss_limit=3)
    )
    assert len(counted) == 3
    assert result.history[0]["train_loss"] == pytest.approx(sum(counted) / 3, rel=1e-6)


def test_a_step_checkpoint_never_holds_what_a_bad_loss_touched(noise_root, experiment, tmp_path):
    # checkpoints after every step: the first loss is finite and checkpointed, the second is
    # not, and the run stops before its step is saved
    with pytest.raises(NonFiniteLossError, match="at step 2 "):
        train(tiny(noise_root, tmp_path / "run", experiment, lr=1e30, checkpoint_minutes=1e-9))
    state = load_checkpoint(tmp_path / "run")
    assert (state["epoch"], state["epoch_step"], state["step"]) == (0, 1, 1)


def test_a_resume_under_another_code_version_is_refused_unless_allowed_and_then_recorded(
    noise_root, store, experiment, tmp_path, monkeypatch, capsys, caplog
):
    out = tmp_path / "run"
    monkeypatch.setenv("ADAUTOMIX_GIT_COMMIT", "1111111")
    first = train(tiny(noise_root, out, experiment))
    written = {p.name: p.read_bytes() for p in out.iterdir()}
    version = adautomix.__version__

    monkeypatch.setenv("ADAUTOMIX_GIT_COMMIT", "2222222")
    config = tiny(noise_root, out, experiment, epochs=2)
    config.save(tmp_path / "config.json")
    command = ["train", "--config", str(tmp_path / "config.json"), "--resume"]
    assert main(command) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == (
        f"error: --resume: {out / CHECKPOINT_NAME} was written by code version "
        f"{version}+1111111, this is {version}+2222222; other code may compute "
        "something else. Train into a new --output-dir, or pass --allow-code-change "
        "to continue it under this code (recorded in the run)"
    )
    assert {p.name: p.read_bytes() for p in out.iterdir()} == written  # nothing written

    with caplog.at_level(logging.WARNING, logger="adautomix.train"):
        assert main([*command, "--allow-code-change"]) == 0
    assert (
        f"was written by code {version}+1111111; continuing it under {version}+2222222"
        in caplog.text
    )
    run = MlflowClient(store).get_run(first.run_id)
    assert run.info.status == "FINISHED"
    assert (
        f"code_version '{version}+1111111' -> '{version}+2222222'"
        in run.data.tags["resume_changes"]
    )
    assert load_checkpoint(out)["code_version"] == f"{version}+2222222"


# A run that holds a folder's lock until its stdin closes.
LOCK_HOLDER = """
import sys
from adautomix.engine import run_lock
run_lock.acquire(sys.argv[1], run_id="the-first-run")
print("locked", flush=True)
sys.stdin.read()
"""


def test_a_second_run_into_a_folder_fails_naming_the_first_until_the_first_is_gone(
    noise_root, store, experiment, tmp_path
):
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, str(out)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline() == "locked\n"
        with pytest.raises(RunLockError) as error:
            train(tiny(noise_root, out, experiment))
        assert (
            f"{out} is in use by another run (MLflow run the-first-run, process "
            f"{holder.pid} on host {socket.gethostname()}"
        ) in str(error.value)
        assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # nothing else written
        assert runs(store, experiment) == []
    finally:
        holder.communicate("")  # the first run ends without releasing its lock (a kill)
    assert (out / LOCK_NAME).exists()
    result = train(tiny(noise_root, out, experiment))  # its process is gone: taken over
    assert result.run_id and not (out / LOCK_NAME).exists()


@pytest.mark.parametrize("content", ["tensor", "no optimizer"])
def test_a_checkpoint_of_the_wrong_content_is_a_checkpoint_error(content, tmp_path, capsys):
    """What an older version or another program left: refused in one line, exit 2, on resume and
    on evaluate, before any data is read."""
    out = tmp_path / "run"
    out.mkdir()
    config = RunConfig(output_dir=str(out), data_root=str(tmp_path / "no-data"))
    config.save(out / "config.json")
    state = (
        torch.ones(3)
        if content == "tensor"
        else {
            "model": {},
            "method": {},
            "ema": None,
            "epoch": 1,
            "step": 5,
            "history": [],
            "run_id": None,
            "config": config.to_dict(),
        }
    )
    torch.save(state, out / CHECKPOINT_NAME)
    what = "a Tensor" if content == "tensor" else "no optimizer, scaler, rng"
    commands = [["train", "--config", str(out / "config.json"), "--resume"]]
    if content == "tensor":  # evaluation needs the networks alone, not the optimiser
        commands.append(["evaluate", str(out), "--no-log"])
    for command in commands:
        assert main(command) == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert line.startswith(
            f"error: checkpoint {out / CHECKPOINT_NAME} is not a training "
            f"checkpoint of this version of adautomix ({what}"
        ), line
    assert not (tmp_path / "no-data").exists()


def test_a_full_disk_stops_the_run_in_one_line_and_a_resume_finishes_it_clean(
    noise_root, store, experiment, tmp_path, capsys
):
    out = tmp_path / "run"
    tiny(noise_root, out, experiment, epochs=2).save(tmp_path / "config.json")
    command = ["train", "--config", str(tmp_path / "config.json")]
    MlflowClient(store).search_experiments()  # the store's tables made, and said so, before
    capsys.readouterr()
    with pytest.MonkeyPatch.context() as patch:
        onto_a_full_disk(patch, after=1)  # epoch 1's checkpoint is written, epoch 2's is not
        assert main(command) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: no space left to write checkpoint.pt in ")
    assert "the previous checkpoint.pt is intact" in line and "--resume" in line
    assert load_checkpoint(out)["epoch"] == 1
    (run,) = runs(store, experiment)
    assert run.info.status == "FAILED" and "space" in run.data.tags[FAILURE_TAG]

    assert main([*command, "--resume"]) == 0
    (run,) = runs(store, experiment)
    assert run.info.status == "FINISHED"
    assert FAILURE_TAG not in run.data.tags
    assert load_checkpoint(out)["epoch"] == 2


# A training killed (SIGKILL) the moment its first epoch is checkpointed, before MLflow hears of
# the epoch: where a pod's kill lands when the checkpoint write was the slow part.
KILLED_AFTER_CHECKPOINT = """
import os, signal, sys
from adautomix.config import RunConfig
from adautomix.engine.train import train
from adautomix.tracking import Tracker

def killed(self, metrics, step):
    os.kill(os.getpid(), signal.SIGKILL)

Tracker.log_metrics = killed
train(RunConfig.load(sys.argv[1]))
"""


def test_an_epoch_checkpointed_but_never_logged_reaches_mlflow_on_resume_once(
    noise_root, store, experiment, tmp_path
):
    out = tmp_path / "run"
    config = tiny(noise_root, out, experiment)
    config.save(tmp_path / "config.json")
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_AFTER_CHECKPOINT, str(tmp_path / "config.json")],
        cwd=ROOT,
        check=False,
    )
    assert killed.returncode == -9
    checkpointed = load_checkpoint(out)
    assert checkpointed["epoch"] == 1
    client = MlflowClient(store)
    assert client.get_metric_history(checkpointed["run_id"], "train_loss") == []

    result = train(tiny(noise_root, out, experiment, epochs=2), resume=True)
    assert result.run_id == checkpointed["run_id"]
    history = client.get_metric_history(result.run_id, "train_loss")
    assert [(m.step, m.value) for m in history] == [
        (1, checkpointed["history"][0]["train_loss"]),
        (2, result.history[1]["train_loss"]),
    ]
    # a second resume (nothing left to train) sends nothing twice
    train(tiny(noise_root, out, experiment, epochs=2), resume=True)
    assert len(client.get_metric_history(result.run_id, "train_loss")) == 2
