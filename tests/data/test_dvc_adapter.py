"""The DVC adapter, each call against real DVC on a real repository in a tmp dir: what
versioning.py relies on, so that a DVC upgrade that changes one of DVC's internal APIs fails
here, by name."""

from __future__ import annotations

import hashlib
import shutil

import pytest

from adautomix.data.dvc_adapter import DvcFailure, open_repo, remote_object
from adautomix.data.versioning import tracked_version
from tests.workspaces import tiny_workspace

NAME = "fashion-mnist"


def wipe(workspace):
    shutil.rmtree(workspace / "data" / NAME)
    shutil.rmtree(workspace / ".dvc" / "cache")


@pytest.fixture
def workspace(tmp_path):
    return tiny_workspace(tmp_path)


def test_the_four_states_of_an_output(workspace):
    dvc_file = workspace / "data.dvc"
    labels = workspace / "data" / NAME / "train_labels.npy"
    with open_repo(workspace) as repo:
        assert repo.output_state(dvc_file) == "uncached"  # the right bytes, no cache
        repo.commit(dvc_file)
        assert repo.output_state(dvc_file) == "ok"
        labels.write_bytes(labels.read_bytes()[:-8] + bytes(8))
        assert repo.output_state(dvc_file) == "modified"
        shutil.rmtree(workspace / "data" / NAME)
        assert repo.output_state(dvc_file) == "missing"


def test_push_and_pull_through_the_default_remote(workspace):
    dvc_file = workspace / "data.dvc"
    before = {p.name: p.read_bytes() for p in (workspace / "data" / NAME).iterdir()}
    with open_repo(workspace) as repo:
        repo.commit(dvc_file)
        repo.push(dvc_file, None)
    wipe(workspace)
    with open_repo(workspace) as repo:
        repo.pull(dvc_file, None)
        assert repo.output_state(dvc_file) == "ok"
    assert {p.name: p.read_bytes() for p in (workspace / "data" / NAME).iterdir()} == before


def test_a_failed_pull_is_a_dvc_failure_with_dvcs_message_on_one_line(workspace):
    with open_repo(workspace) as repo:
        repo.commit(workspace / "data.dvc")
    wipe(workspace)
    with open_repo(workspace) as repo:
        with pytest.raises(DvcFailure) as failure:  # the local remote holds nothing yet
            repo.pull(workspace / "data.dvc", None)
    message = str(failure.value)
    assert "\n" not in message and "\x1b" not in message
    assert message.startswith("Checkout failed for following targets: ")
    # DVC's exception, then the cause it logs (which object is missing), without its traceback
    assert (
        "/data/fashion-mnist Is your cache up to date? <https://error.dvc.org/missing-files>: "
        in message
    )
    assert message.endswith(
        "Some of the cache files do not exist neither locally nor on remote. Missing cache "
        f"files: md5: {tracked_version(NAME, workspace)}"
    )


def test_remotes_by_name_and_by_default(workspace):
    with open_repo(workspace) as repo:
        assert repo.remote_name(None) == repo.remote_name("") == "local"
        assert repo.remote_settings(None)["url"] == str(workspace / ".dvc" / "remote")
        assert repo.remote_settings("s3")["url"].startswith("s3://")
        assert repo.remote_settings("nowhere") == {}


def test_bad_objects_are_those_whose_bytes_do_not_hash_to_their_names(workspace):
    version = tracked_version(NAME, workspace)
    labels = (workspace / "data" / NAME / "train_labels.npy").read_bytes()
    with open_repo(workspace) as repo:
        repo.commit(workspace / "data.dvc")
        assert repo.bad_objects(version) == []
        cached = repo.cached_object(hashlib.md5(labels).hexdigest())
        assert cached.read_bytes() == labels
        cached.chmod(0o644)
        cached.write_bytes(labels[:-8] + bytes(8))
        (bad,) = repo.bad_objects(version)
    assert (bad.relpath, bad.md5, bad.cached) == (
        "train_labels.npy",
        hashlib.md5(labels).hexdigest(),
        cached,
    )


def test_a_remote_keeps_an_object_where_dvc_puts_it(workspace):
    version = tracked_version(NAME, workspace)
    with open_repo(workspace) as repo:
        repo.commit(workspace / "data.dvc")
        repo.push(workspace / "data.dvc", None)
        url = repo.remote_settings(None)["url"]
    from pathlib import Path

    assert Path(remote_object(url, version)).is_file()
    assert remote_object("s3://bucket/dvc/", "ab12") == "s3://bucket/dvc/files/md5/ab/12"
