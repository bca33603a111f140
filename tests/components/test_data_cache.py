"""KFP's cache cannot hand the train step a dataset from another volume unnoticed: the data step's
cache key includes the workspace claim, and a cached result whose data is not on the volume the
train step mounts (a recreated or emptied claim) fails naming --no-cache, not `dvc pull`."""

from __future__ import annotations

import shutil

import pytest
from kfp import dsl

from adautomix.data.errors import DataError
from adautomix.steps import step_arguments
from components.train import train
from tests.components.step_arguments import PIPELINE_RUN, TRAINING
from tests.helpers import compiled


def data_task_inputs(spec: dict) -> dict:
    parameters = spec["root"]["dag"]["tasks"]["data"]["inputs"]["parameters"]
    return {
        name: value.get("runtimeValue", {}).get("constant") for name, value in parameters.items()
    }


def test_the_data_step_s_cache_key_changes_with_the_workspace_claim(tmp_path):
    keys = {}
    for claim in ("adautomix-workspace", "team-b-workspace"):
        (tmp_path / claim).mkdir()
        spec, executors = compiled(tmp_path / claim, "--pvc", claim)
        (mount,) = executors["exec-data"]["pvcMount"]
        assert mount["constant"] == claim  # the volume the step mounts ...
        keys[claim] = data_task_inputs(spec)
        assert keys[claim]["workspace_volume"] == claim  # ... is one of its inputs
    assert keys["adautomix-workspace"] != keys["team-b-workspace"]


def test_the_data_step_records_the_claim_its_data_is_on(prepared, tmp_path):
    from components.data import data

    workspace, _, _ = prepared
    artifact = dsl.Dataset(name="prepared", uri=str(tmp_path / "prepared"))
    data.python_func(
        dataset="fashion-mnist",
        data_version="",
        workspace=str(workspace),
        remote="",
        prepared=artifact,
        workspace_volume="adautomix-workspace",
    )
    assert artifact.metadata["workspace_volume"] == "adautomix-workspace"


def arguments(metadata: dict, workspace) -> dict:
    return step_arguments(str(workspace), metadata, dict(TRAINING), {}, "p", "run-1", "r")


def test_a_cached_data_step_whose_volume_was_recreated_is_named_with_the_fix(prepared, tmp_path):
    _, _, artifact = prepared
    # the same claim, recreated: the cached result points at a folder that is now empty
    metadata = {**artifact.metadata, "workspace_volume": "adautomix-workspace"}
    metadata["data_root"] = str(tmp_path / "recreated" / "data")
    with pytest.raises(DataError) as error:
        arguments(metadata, tmp_path / "recreated")
    message = str(error.value)
    assert "--no-cache" in message and "cache" in message and "adautomix-workspace" in message
    assert "dvc pull" not in message and "\n" not in message


def test_a_cached_data_step_whose_volume_now_holds_other_data_is_named_with_the_fix(
    prepared, tmp_path
):
    _, _, artifact = prepared
    copy = tmp_path / "data"
    shutil.copytree(artifact.metadata["data_root"], copy)
    metadata = {**artifact.metadata, "data_root": str(copy)}
    assert arguments(metadata, tmp_path)["data_root"] == str(copy)  # the data as reported: fine
    metadata["sha256"] = "f" * 64  # another version of the dataset than the one on the volume
    with pytest.raises(DataError, match="holds other data .* --no-cache"):
        arguments(metadata, tmp_path)


def test_the_train_step_stops_in_one_line_naming_no_cache(prepared, tmp_path, capsys):
    workspace, version, artifact = prepared
    cached = dsl.Dataset(name="prepared", uri=str(tmp_path / "prepared"))
    cached.metadata.update({**artifact.metadata, "data_root": str(tmp_path / "empty" / "data")})
    checkpoint = dsl.Model(name="checkpoint", uri=str(tmp_path / "model"))
    with pytest.raises(SystemExit) as stopped:
        train.python_func(
            prepared=cached,
            config={**TRAINING, "experiment": "components"},
            overrides={},
            workspace=str(tmp_path / "empty"),
            checkpoint=checkpoint,
            **PIPELINE_RUN,
        )
    assert stopped.value.code == 2  # bad input, as from the CLI
    err = capsys.readouterr().err
    assert err.startswith("error: dataset fashion-mnist is not in") and "--no-cache" in err
    assert err.count("\n") == 1 and not (tmp_path / "model").exists()
