"""The pipeline's train step: its checkpoint folder is keyed by the code as well as the config
and the data, and a start its checks refuse writes nothing (no folder, no config.json)."""

from __future__ import annotations

import pytest

from adautomix.config import ConfigError, RunConfig
from adautomix.data import prepare
from adautomix.steps import checkpoint_dir, prepare_run, train_step
from tests.data import fixtures
from tests.helpers import small_run_values


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
    # fields that change nothing computed stay out: a re-run resumes whatever its run name,
    # data location, output folder, worker count or checkpoint interval
    uncomputed = dict(
        checkpoint_minutes=1,
        progress=False,
        output_dir="/elsewhere/run",
        data_root="/mnt/data",
        run_name="again",
        num_workers=0,
    )
    assert first == checkpoint_dir(tmp_path, config.replace(**uncomputed), "v1")
    # what the run computes is in: its config, its data version
    assert checkpoint_dir(tmp_path, config.replace(lr=0.1), "v1") != first
    assert checkpoint_dir(tmp_path, config.replace(seed=1), "v1") != first
    assert checkpoint_dir(tmp_path, config, "v2") != first
    monkeypatch.setenv("ADAUTOMIX_GIT_COMMIT", "2222222")  # a new image
    assert checkpoint_dir(tmp_path, config, "v1") != first
    assert checkpoint_dir(tmp_path, config, "v1", code="elsewhere") != checkpoint_dir(
        tmp_path, config, "v1"
    )


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
    values = small_run_values(
        noise_root, **{**dict(batch_size=10, subset=20, test_subset=10), **bad}
    )
    root = tmp_path / "checkpoints"
    with pytest.raises(ConfigError, match=message):  # what a TrainJob's launcher writes first
        prepare_run(root, "v1", **values)
    with pytest.raises(ConfigError, match=message):  # training in the step's own process
        train_step(root, "v1", **values)
    assert not root.exists()
