"""DVC data versions: the project's DVC files, S3 round trips against a real S3 endpoint, and the
errors that stop a pipeline before anything is trained or registered."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from pathlib import Path

import boto3
import pytest
from dvc.repo import Repo

from adautomix.data import DataError, prepare
from adautomix.data import versioning
from adautomix.data.dvc_adapter import LIBRARY_LOGGERS
from adautomix.data.versioning import materialise, normalise_version, tracked_version
from adautomix.errors import exit_on_error
from tests.servers import free_port
from tests.data import fixtures
from tests.workspaces import PROJECT, tiny_workspace

NAME = "fashion-mnist"


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def commit(workspace: Path) -> str:
    """Make data.dvc track what is in data/fashion-mnist now; returns that version."""
    with Repo(str(workspace)) as repo:
        repo.commit(str(workspace / "data.dvc"), force=True)
    return tracked_version(NAME, workspace)


def push(workspace: Path, remote: str | None = None) -> None:
    with Repo(str(workspace)) as repo:
        repo.push(targets=[str(workspace / "data.dvc")], remote=remote)


def wipe(workspace: Path) -> None:
    shutil.rmtree(workspace / "data" / NAME)
    shutil.rmtree(workspace / ".dvc" / "cache")


@pytest.fixture
def workspace(tmp_path):
    """A tiny dataset that data.dvc tracks, in the DVC cache."""
    workspace = tiny_workspace(tmp_path)
    commit(workspace)
    return workspace


def use_bucket(workspace: Path, bucket: str) -> None:
    with open(workspace / ".dvc" / "config.local", "a") as f:
        f.write(f"['remote \"s3\"']\n    url = s3://{bucket}/dvc\n")


def test_the_project_tracks_the_default_dataset_with_a_local_and_an_s3_remote():
    with Repo(str(PROJECT)) as repo:
        config = repo.config
    assert config["core"]["remote"] == "local"
    assert "://" not in config["remote"]["local"]["url"]
    s3 = config["remote"]["s3"]
    assert s3["url"].startswith("s3://")
    # endpoint and credentials come from the environment, never from the committed config
    assert not {"endpointurl", "access_key_id", "secret_access_key"} & s3.keys()
    assert "/config.local" in (PROJECT / ".dvc" / ".gitignore").read_text().split()
    assert tracked_version(NAME, PROJECT).endswith(".dir")


def test_s3_push_wipe_pull_is_byte_identical(workspace, s3_env):
    use_bucket(workspace, s3_env)
    version = tracked_version(NAME, workspace)
    before = snapshot(workspace / "data" / NAME)
    push(workspace, "s3")
    assert boto3.client("s3").list_objects_v2(Bucket=s3_env)["KeyCount"] > 0
    wipe(workspace)
    found = materialise(NAME, version, workspace, remote="s3")
    assert found.version == version and found.data_root == workspace / "data"
    assert snapshot(workspace / "data" / NAME) == before
    assert found.manifest.sha256 == json.loads(before["manifest.json"])["sha256"]


def test_a_missing_s3_credential_is_named(workspace, s3_env, monkeypatch, tmp_path):
    use_bucket(workspace, s3_env)
    push(workspace, "s3")
    wipe(workspace)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    with pytest.raises(DataError, match="AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"):
        materialise(NAME, "", workspace, remote="s3")


def test_a_version_no_remote_holds_is_an_error_not_a_download(workspace, s3_env):
    use_bucket(workspace, s3_env)
    wipe(workspace)
    with pytest.raises(DataError, match="could not be pulled from DVC remote 's3'"):
        materialise(NAME, "", workspace, remote="s3")


@pytest.mark.parametrize("set_in", ["AWS_ENDPOINT_URL", "endpointurl"])
def test_an_s3_endpoint_that_is_down_is_named_in_one_line_at_once(
    set_in, workspace, s3_env, monkeypatch, capfd, caplog
):
    use_bucket(workspace, s3_env)
    push(workspace, "s3")  # the version is in the bucket: only the endpoint is wrong
    wipe(workspace)
    closed = f"http://127.0.0.1:{free_port()}"
    if set_in == "AWS_ENDPOINT_URL":
        monkeypatch.setenv("AWS_ENDPOINT_URL", closed)
        where = "Check AWS_ENDPOINT_URL"
    else:  # the remote's own setting outranks the environment's (still the live server)
        with open(workspace / ".dvc" / "config.local", "a") as f:
            f.write(f"    endpointurl = {closed}\n")
        where = "Check the remote's endpointurl (dvc remote modify --local NAME endpointurl URL)"
    caplog.set_level(logging.DEBUG)  # as a step's log takes every library's records
    started = time.monotonic()
    with pytest.raises(SystemExit) as stopped, exit_on_error():
        materialise(NAME, "", workspace, remote="s3")
    assert time.monotonic() - started < 10  # no retries: DVC's take half a minute
    assert stopped.value.code == 2
    (line,) = capfd.readouterr().err.strip().splitlines()
    assert line == (
        f"error: DVC remote 's3' (s3://{s3_env}/dvc): the S3 endpoint {closed} cannot be "
        "reached (Failed to establish a new connection: [Errno 111] Connection refused). "
        f"{where}, and that the S3 service there is up"
    )
    assert not [r for r in caplog.records if r.name.split(".")[0] in LIBRARY_LOGGERS]


def test_a_pull_that_fails_names_what_dvc_logged_and_prints_no_traceback(
    workspace, s3_env, capfd, caplog
):
    use_bucket(workspace, s3_env)  # an empty bucket on a live endpoint
    wipe(workspace)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(DataError) as refused:
        materialise(NAME, "", workspace, remote="s3")
    # DVC's exception says only that the checkout failed; which object is missing is in its log
    version = tracked_version(NAME, workspace)
    assert f"Missing cache files: md5: {version}" in str(refused.value), refused.value
    assert "Traceback" not in capfd.readouterr().err
    assert not [r for r in caplog.records if r.name.split(".")[0] in LIBRARY_LOGGERS]


def test_data_that_differs_from_its_version_is_a_hash_mismatch(workspace):
    labels = workspace / "data" / NAME / "train_labels.npy"
    labels.write_bytes(labels.read_bytes()[:-8] + bytes(8))
    with pytest.raises(DataError, match="hash mismatch"):
        materialise(NAME, "", workspace)


def test_a_corrupt_object_in_the_remote_is_named_with_how_to_evict_it(workspace):
    """DVC does not check what it pulls, so a remote's corrupt object reaches the cache under
    its good name and `dvc pull` or `dvc checkout` would give the same bytes again: the error
    names the remote's copy, and following it (evict, replace in the remote) is enough."""
    version = tracked_version(NAME, workspace)
    good = snapshot(workspace / "data" / NAME)
    push(workspace)
    labels_md5 = hashlib.md5(good["train_labels.npy"]).hexdigest()
    in_remote = workspace / ".dvc" / "remote" / "files" / "md5" / labels_md5[:2] / labels_md5[2:]
    in_remote.chmod(0o644)
    in_remote.write_bytes(good["train_labels.npy"][:-8] + bytes(8))
    wipe(workspace)
    with pytest.raises(DataError) as refused:
        materialise(NAME, "", workspace)
    message = str(refused.value)
    assert message.startswith(
        f"DVC remote 'local' holds a corrupt copy of data version {version} (train_labels.npy: "
    )
    assert str(in_remote) in message
    evict = message.split("`rm -rf ")[1].split("`")[0].split()
    assert evict == [
        str(workspace / ".dvc" / "cache" / "files" / "md5" / labels_md5[:2] / labels_md5[2:]),
        str(workspace / "data" / NAME),
    ]

    for path in map(Path, evict):  # what the message says, done
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    remote_listing = in_remote.parents[1] / version[:2] / version[2:]
    assert message.split(" delete ")[1].split(" from the remote")[0] == " and ".join(
        sorted([str(in_remote), str(remote_listing)])
    )
    in_remote.unlink()
    remote_listing.unlink()
    (workspace / "data" / NAME).mkdir(parents=True)
    for name, data in good.items():
        (workspace / "data" / NAME / name).write_bytes(data)
    commit(workspace)
    push(workspace)
    shutil.rmtree(workspace / "data" / NAME)
    shutil.rmtree(workspace / ".dvc" / "cache")
    assert materialise(NAME, "", workspace).version == version
    assert snapshot(workspace / "data" / NAME) == good


def test_an_older_version_is_materialised_beside_the_tracked_one(workspace, tmp_path):
    old = tracked_version(NAME, workspace)
    old_files = snapshot(workspace / "data" / NAME)
    push(workspace)  # the local default remote
    source = fixtures.make_fashion_mnist(tmp_path / "raw2", n_train=24, n_test=10)
    prepare(NAME, source=source, data_root=workspace / "data", force=True)
    new = commit(workspace)
    push(workspace)
    shutil.rmtree(workspace / ".dvc" / "cache")  # only the remote has the old version now
    found = materialise(NAME, old.removesuffix(".dir"), workspace)
    assert new != old and found.version == old
    assert found.data_root == workspace / "data" / ".versions" / old
    assert snapshot(found.data_root / NAME) == old_files
    assert materialise(NAME, "", workspace).manifest.counts["train"] == 24  # untouched


def prepare_from(source: Path):
    """`prepare` as the data step calls it (no source), reading the tiny raw files instead of
    the real Fashion-MNIST."""
    return lambda name, data_root: prepare(name, source=source, data_root=data_root)


def test_a_version_in_no_remote_is_prepared_here_checked_and_pushed(
    workspace, tmp_path, monkeypatch
):
    monkeypatch.setattr(versioning, "prepare", prepare_from(tmp_path / "raw"))
    version = tracked_version(NAME, workspace)
    wipe(workspace)
    assert materialise(NAME, "", workspace).version == version
    with Repo(str(workspace)) as repo:
        assert repo.status(targets=[str(workspace / "data.dvc")], cloud=True) == {}


def test_a_local_prepare_that_gives_other_bytes_is_a_hash_mismatch(
    workspace, tmp_path, monkeypatch
):
    other = fixtures.make_fashion_mnist(tmp_path / "other", n_train=24, n_test=10)
    monkeypatch.setattr(versioning, "prepare", prepare_from(other))
    tracked = (workspace / "data.dvc").read_text()
    wipe(workspace)
    with pytest.raises(DataError, match="prepared here differs .*hash mismatch"):
        materialise(NAME, "", workspace)
    assert (workspace / "data.dvc").read_text() == tracked


@pytest.mark.parametrize("text", ["abc", "g" * 32, "a" * 31 + ".dir"])
def test_a_data_version_must_be_a_dvc_hash(text):
    with pytest.raises(DataError, match="not a DVC hash"):
        normalise_version(text)
    assert normalise_version("a" * 32) == "a" * 32 + ".dir"
