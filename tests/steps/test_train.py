"""The pipeline's train step: its checkpoint folder is keyed by the code as well as the config
and the data, and a start its checks refuse writes nothing (no folder, no config.json)."""

from __future__ import annotations

import pytest

from adautomix.config import UNCOMPUTED_FIELDS, ConfigError, RunConfig
from adautomix.data import prepare
from adautomix.steps import checkpoint_dir, prepare_run, train_step
from tests.data import fixtures


@pytest.fixture(scope="module")
def noise_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("noise")
    source = fixtures.make_fashion_mnist(root / "raw", n_train=100, n_test=50)
    prepare("fashion-mnist", source=source, data_root=root / "data")
    return root / "data"


def test_the_checkpoint_folder_changes_with_the_code_version(tmp_path, monkeypatch):
    config = RunConfig(method="mixup", lr=0.05)
    monkeypatch.setenv("ADAUTOMIX_GIT_COMMIT", "1111111")
    first = checkpoint_dir(tmp_path, config, "v1")
    assert first == checkpoint_dir(tmp_path, config, "v1")
    assert first == checkpoint_dir(
        tmp_path, config.replace(checkpoint_minutes=1, progress=False), "v1"
    )  # fields that change nothing computed stay out
    monkeypatch.setenv("ADAUTOMIX_GIT_COMMIT", "2222222")  # a new image
    assert checkpoint_dir(tmp_path, config, "v1") != first
    assert checkpoint_dir(tmp_path, config, "v1", code="elsewhere") != checkpoint_dir(
        tmp_path, config, "v1"
    )
    assert {"output_dir", "checkpoint_minutes"} <= set(UNCOMPUTED_FIELDS)


@pytest.mark.parametrize(
    "bad, message",
    [
        (
            {"method": "adautomix", "batch_size": 2, "method_args": {"mix_samples": 3}},
            "batch_size 2 is smaller than method 'adautomix' needs",
        ),
        ({"model": "convnext_t"}, "'convnext_t' cannot take 28 px images"),
    ],
)
def test_a_refused_start_writes_nothing(bad, message, noise_root, tmp_path):
    values = {
        **dict(
            dataset="fashion-mnist",
            epochs=1,
            batch_size=10,
            subset=20,
            test_subset=10,
            data_root=str(noise_root),
            progress=False,
            log_images_every=0,
        ),
        **bad,
    }
    root = tmp_path / "checkpoints"
    with pytest.raises(ConfigError, match=message):  # what a TrainJob's launcher writes first
        prepare_run(root, "v1", **values)
    with pytest.raises(ConfigError, match=message):  # training in the step's own process
        train_step(root, "v1", **values)
    assert not root.exists()
