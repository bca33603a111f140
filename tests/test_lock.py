"""The lock files reproduce: every package pinned with hashes, the build tools an offline image
build needs, nothing of the test tools in the image's lock, and this environment installed from
them. (A real fresh install takes minutes and 7 GB; its time is in docs/benchmarks.md.)"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
RUNTIME_EXTRAS = ("dali", "pipeline", "server")
DEV_ONLY = ("pytest", "moto", "dockerfile", "kubernetes-validate", "uv")
ENTRY = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s\\;]+)\s*$")
HASH = re.compile(r"^--hash=sha256:[0-9a-f]{64}$")


def read_lock(name: str) -> dict[str, tuple[str, frozenset[str]]]:
    """{canonical name: (version, hashes)}; fails on any line that is not a hashed exact pin."""
    text = (ROOT / name).read_text()
    entries: dict[str, tuple[str, frozenset[str]]] = {}
    for logical in re.sub(r"\\\n", " ", text).splitlines():
        logical = logical.split(" #")[0].strip()
        if not logical or logical.startswith("#"):
            continue
        requirement, *hashes = logical.split()
        match = ENTRY.match(requirement)
        assert match, f"{name}: {requirement!r} is not an exact pin NAME==VERSION"
        assert hashes and all(HASH.match(h) for h in hashes), f"{name}: {requirement} lacks --hash"
        key = canonicalize_name(match["name"])
        assert key not in entries, f"{name}: {key} twice"
        entries[key] = (match["version"], frozenset(hashes))
    return entries


@pytest.fixture(scope="module")
def runtime():
    return read_lock("requirements.lock")


@pytest.fixture(scope="module")
def dev():
    return read_lock("requirements-dev.lock")


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_image_lock_holds_the_build_tools_an_offline_build_needs(runtime):
    # torch's and the package's own build need setuptools >= 77; astunparse needs wheel
    assert Version(runtime["setuptools"][0]) >= Version("77")
    assert "wheel" in runtime
    for requirement in map(Requirement, pyproject()["build-system"]["requires"]):
        assert runtime[canonicalize_name(requirement.name)][0] in requirement.specifier


def test_the_image_lock_carries_no_test_tools_and_the_dev_lock_adds_them(runtime, dev):
    for name in DEV_ONLY:
        assert name not in runtime, f"requirements.lock (the image) holds {name}"
        assert name in dev
    for name, (version, hashes) in runtime.items():
        assert dev.get(name, (None,))[0] == version, f"{name}: the image and .venv differ"
        assert dev[name][1] == hashes


@pytest.mark.parametrize(
    "lock, extras",
    [
        ("requirements.lock", RUNTIME_EXTRAS),
        ("requirements-dev.lock", (*RUNTIME_EXTRAS, "test", "dev")),
    ],
)
def test_every_dependency_pyproject_declares_is_locked_within_its_range(lock, extras):
    entries = read_lock(lock)
    project = pyproject()["project"]
    declared = project["dependencies"] + [
        r for e in extras for r in project["optional-dependencies"][e]
    ]
    for requirement in map(Requirement, declared):
        name = canonicalize_name(requirement.name)
        assert name in entries, (
            f"{requirement} is in pyproject.toml but not in {lock}: bash scripts/lock.sh"
        )
        assert entries[name][0] in requirement.specifier, (
            f"{lock} pins {name} {entries[name][0]}, outside pyproject's {requirement}"
        )


def test_this_environment_is_exactly_the_dev_lock():
    """uv, offline, in --require-hashes mode: nothing to install means the lock parses as hashed
    pins and .venv holds each at its version (what scripts/setup.sh installs)."""
    uv = Path(sys.executable).parent / "uv"
    done = subprocess.run(
        [
            str(uv),
            "pip",
            "install",
            "--dry-run",
            "--offline",
            "--require-hashes",
            "--python",
            sys.executable,
            "-r",
            str(ROOT / "requirements-dev.lock"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "Would make no changes" in done.stderr
