"""The code version that keys checkpoint folders never reads "unknown": an image built without its
commit (kaniko, buildkit) is named by its pinned digest or by its code, and a dirty checkout (or
an image of one) is not named as its HEAD."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from adautomix import __version__, provenance
from adautomix.config import RunConfig
from adautomix.steps import checkpoint_dir
from tests.helpers import PROJECT

PINNED = "registry.example.com/ml/adautomix@sha256:"


def git(repo, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path):
    """A checkout whose package folder `pkg` is committed clean."""
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("VALUE = 1\n")
    (tmp_path / "README.md").write_text("notes\n")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "first")
    return tmp_path


@pytest.fixture
def no_commit(monkeypatch):
    """An image built without GIT_COMMIT, as the Dockerfile's default leaves it."""
    monkeypatch.setenv(provenance.COMMIT_ENV, "unknown")
    monkeypatch.delenv(provenance.IMAGE_ENV, raising=False)


def test_an_image_built_without_its_commit_is_named_by_its_pinned_digest(no_commit, monkeypatch):
    versions = []
    for digest in ("1" * 64, "2" * 64):
        monkeypatch.setenv(provenance.IMAGE_ENV, PINNED + digest)
        versions.append(provenance.code_version())
        assert versions[-1] == f"{__version__}+image.sha256.{digest}"
    config = RunConfig(dataset="fashion-mnist", model="resnet18", epochs=1)
    folders = {checkpoint_dir("/ckpt", config, "v1", code) for code in versions}
    assert len(folders) == 2  # two builds never share a checkpoint folder


def test_an_unpinned_image_without_its_commit_is_named_by_its_code(
    no_commit, monkeypatch, tmp_path
):
    monkeypatch.setenv(provenance.IMAGE_ENV, "registry.example.com/ml/adautomix:0.1.0")  # a tag
    version = provenance.code_version()
    assert "unknown" not in version and version.startswith(f"{__version__}+source.")
    assert provenance.code_version() == version  # the same code, the same name: it resumes
    # the same code elsewhere is the same version; other code under the same tag is another
    builds = {}
    for build in ("same", "changed"):
        copy = tmp_path / build / "adautomix"
        shutil.copytree(provenance.CHECKOUT, copy, ignore=shutil.ignore_patterns("__pycache__"))
        monkeypatch.setattr(provenance, "CHECKOUT", copy)
        if build == "changed":
            (copy / "mixers" / "mixup.py").write_text("# changed\n", encoding="utf-8")
        builds[build] = provenance.code_version()
    assert builds["same"] == version
    assert builds["changed"] != version and builds["changed"].startswith(f"{__version__}+source.")


def test_a_dirty_checkout_is_not_named_as_its_head(repo):
    from adautomix import checkout

    package = repo / "pkg"
    head = git(repo, "rev-parse", "HEAD")
    assert checkout.commit(package) == head
    (repo / "README.md").write_text("edited notes\n")  # outside the package: not its code
    assert checkout.commit(package) == head

    (package / "__init__.py").write_text("VALUE = 2\n")
    first = checkout.commit(package)
    assert first.startswith(f"{head}.dirty.") and len(first) == len(head) + len(".dirty.") + 12
    (package / "__init__.py").write_text("VALUE = 3\n")
    second = checkout.commit(package)
    assert second.startswith(f"{head}.dirty.") and second != first  # each change its own name
    git(repo, "checkout", "-q", "--", "pkg")
    (package / "extra.py").write_text("UNTRACKED = True\n")  # a new file counts too
    assert checkout.commit(package).startswith(f"{head}.dirty.")
    (package / "extra.py").unlink()
    assert checkout.commit(package) == head


def test_a_dirty_checkout_s_code_version_differs_from_its_head_s(repo, monkeypatch):
    monkeypatch.setenv(provenance.COMMIT_ENV, "")  # unset, and restored after the test
    monkeypatch.setattr(provenance, "CHECKOUT", repo / "pkg")
    head = git(repo, "rev-parse", "HEAD")
    assert provenance.code_version() == f"{__version__}+{head}"
    # the processes this one starts inherit its name, whatever happens to the tree meanwhile
    assert os.environ[provenance.COMMIT_ENV] == head
    (repo / "pkg" / "__init__.py").write_text("VALUE = 2\n")
    assert provenance.code_version() == f"{__version__}+{head}"
    # a new process, started apart from this one, imports the edited code
    monkeypatch.setenv(provenance.COMMIT_ENV, "")
    provenance._checkout_commit.cache_clear()
    assert provenance.code_version().startswith(f"{__version__}+{head}.dirty.")
    assert provenance.git_commit().startswith(f"{head}.dirty.")  # the run's tags say so too


def test_a_folder_git_does_not_track_has_no_commit(repo):
    from adautomix import checkout

    # e.g. a copy installed into a virtualenv inside the checkout
    copy = repo / ".venv" / "pkg"
    shutil.copytree(repo / "pkg", copy)
    (repo / ".gitignore").write_text(".venv\n")
    assert checkout.commit(copy) == "unknown"


def test_the_image_build_bakes_in_the_name_a_run_from_the_checkout_computes(repo):
    from adautomix import checkout

    shutil.copytree(PROJECT / "docker", repo / "docker", ignore=shutil.ignore_patterns("*.tar"))
    shutil.copy(PROJECT / "adautomix" / "checkout.py", repo / "pkg" / "checkout.py")
    (repo / "adautomix").symlink_to("pkg")
    (repo / "requirements.lock").write_text("")  # the wheelhouse's prerequisite
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "docker")
    (repo / "pkg" / "__init__.py").write_text("VALUE = 2\n")
    planned = subprocess.run(
        ["make", "-n", "-C", "docker", "build", "IMAGE=adautomix:test"],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    expected = checkout.commit(repo / "pkg")
    assert ".dirty." in expected and f"--build-arg GIT_COMMIT={expected} " in planned
