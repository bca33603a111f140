"""The training run under bad input and faults, for real: a run that diverges stops FAILED and
unsaved; a resume under another config is refused before anything is written; bad values stop a
run before MLflow hears of it. On a tiny noise Fashion-MNIST in the real on-disk format."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from adautomix.cli import main
from adautomix.config import ConfigError, RunConfig
from adautomix.data import DataError, content_hash, prepare
from adautomix.engine.checkpoint import CHECKPOINT_NAME, CheckpointError, load_checkpoint
from adautomix.engine.loss_guard import NonFiniteLossError
from adautomix.engine.train import train
from adautomix.tracking import FAILURE_TAG
from tests.data import fixtures


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
    values = dict(dataset="fashion-mnist", model="resnet18", method="vanilla", epochs=1,
                  batch_size=10, subset=20, test_subset=10, lr=0.05, data_root=str(noise_root),
                  output_dir=str(out), experiment=experiment, progress=False,
                  log_images_every=0, num_workers=0)
    return RunConfig(**{**values, **changes})


def runs(store: str, experiment: str):
    found = MlflowClient(store).get_experiment_by_name(experiment)
    return MlflowClient(store).search_runs([found.experiment_id]) if found else []


def test_a_diverging_run_stops_failed_and_is_not_checkpointed(noise_root, store, experiment,
                                                              tmp_path, capsys):
    config = tiny(noise_root, tmp_path / "run", experiment, lr=1e30)
    config.save(tmp_path / "huge-lr.json")
    assert main(["train", "--config", str(tmp_path / "huge-lr.json")]) == 1
    err = capsys.readouterr().err.splitlines()[-1]     # after MLflow's own log lines
    assert err.startswith("error: training stopped at step 2 (epoch 1): 1 non-finite training loss")
    assert "--lr (now 1e+30)" in err
    assert not (tmp_path / "run" / CHECKPOINT_NAME).exists()
    (run,) = runs(store, experiment)
    assert run.info.status == "FAILED" and "non-finite training loss" in run.data.tags[FAILURE_TAG]
    assert "val_top1" not in run.data.metrics          # no epoch was logged as if it had worked


def test_above_a_limit_of_one_bad_steps_are_skipped_until_the_limit(noise_root, experiment,
                                                                    tmp_path):
    config = tiny(noise_root, tmp_path / "run", experiment, lr=1e30, subset=40,
                  nonfinite_loss_limit=3)
    with pytest.raises(NonFiniteLossError, match="at step 4 .*3 non-finite training losses"):
        train(config)


def test_a_resume_under_a_changed_config_is_refused_before_anything_is_written(
        noise_root, store, experiment, tmp_path, caplog):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".checkpoint-killed.tmp").write_bytes(b"\0" * 1000)    # a write a kill cut short
    with caplog.at_level(logging.INFO, logger="adautomix.train"):
        first = train(tiny(noise_root, out, experiment), resume=True)
    assert f"no {CHECKPOINT_NAME} in {out}" in caplog.text       # said in one line, then trained
    assert sorted(p.name for p in out.iterdir()) == [CHECKPOINT_NAME, "config.json"]
    written = {p.name: p.read_bytes() for p in out.iterdir()}

    for changes in ({"method": "mixup", "lr": 0.1}, {"model": "preactresnet18"}):
        with pytest.raises(ConfigError) as error:
            train(tiny(noise_root, out, experiment, epochs=2, **changes), resume=True)
        message = str(error.value)
        for field, value in changes.items():
            assert f"{field} " in message and repr(value) in message, message
        assert "epochs 1 in the checkpoint" not in message      # allowed; not a refusal
    assert {p.name: p.read_bytes() for p in out.iterdir()} == written   # nothing written

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


def test_bad_values_stop_the_run_before_mlflow_hears_of_it(noise_root, store, experiment,
                                                          tmp_path):
    with pytest.raises(ConfigError, match="'convnext_t' cannot take 28 px images"):
        train(tiny(noise_root, tmp_path / "a", experiment, model="convnext_t"))
    root = tmp_path / "bad-labels"
    source = fixtures.make_fashion_mnist(root / "raw", n_train=100, n_test=50)
    manifest = prepare("fashion-mnist", source=source, data_root=root / "data")
    labels = np.load(manifest.root / "test_labels.npy")
    labels[0] = 12
    np.save(manifest.root / "test_labels.npy", labels)
    values = json.loads((manifest.root / "manifest.json").read_text())
    values["sha256"] = content_hash(manifest.root)       # re-signed: only the label check can tell
    (manifest.root / "manifest.json").write_text(json.dumps(values))
    with pytest.raises(DataError, match="test labels span 0..12"):
        train(tiny(root / "data", tmp_path / "b", experiment))
    assert runs(store, experiment) == []
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    assert load_checkpoint(tmp_path / "a") is None
