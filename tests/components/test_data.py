"""The data component: a verified DVC version in the workspace, described by its artifact."""

from __future__ import annotations

import json

import pytest
from dvc.repo import Repo
from kfp import dsl

from adautomix.data.versioning import tracked_version
from components.data import data


def test_the_artifact_records_the_version_and_where_the_data_is(prepared):
    workspace, version, artifact = prepared
    assert version == tracked_version("fashion-mnist", workspace)
    assert artifact.metadata["data_version"] == version
    assert artifact.metadata["data_root"] == str(workspace / "data")
    manifest = json.loads(open(artifact.path).read())
    assert manifest["sha256"] == artifact.metadata["sha256"] and manifest["counts"]["train"] == 20


def test_a_dataset_prepared_by_hand_is_checked_against_its_version_and_cached(prepared):
    workspace, _, _ = prepared
    with Repo(str(workspace)) as repo:
        assert repo.status(targets=[str(workspace / "data.dvc")]) == {}


def test_an_unknown_version_fails_in_one_line_and_writes_no_artifact(prepared, tmp_path, capsys):
    workspace, _, _ = prepared
    artifact = dsl.Dataset(name="prepared", uri=str(tmp_path / "prepared"))
    with pytest.raises(SystemExit) as stopped:
        data.python_func(
            dataset="fashion-mnist",
            data_version="0" * 32,
            workspace=str(workspace),
            remote="",
            prepared=artifact,
        )
    assert stopped.value.code == 2  # bad input, as from the CLI
    err = capsys.readouterr().err
    assert err.startswith("error: data version 00000") and "could not be pulled" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "prepared").exists() and not artifact.metadata
