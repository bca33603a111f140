"""A DALI that is installed but fails to import (a missing CUDA library, a broken wheel): the lock
pins DALI, so its tests must fail rather than skip, `--loader auto` must pass it over with a
warning, and `--loader dali` must name the import error.

The breakage is simulated in a fresh interpreter: a sitecustomize.py puts a finder first on
sys.meta_path that reports nvidia.dali as installed and fails to load it, as a missing shared
library does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BROKEN_DALI = """
import importlib.abc, importlib.machinery, sys

class _Broken(importlib.abc.Loader):
    def create_module(self, spec):
        raise OSError("libnvimgcodec.so.0: cannot open shared object file")
    def exec_module(self, module):
        pass

class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "nvidia.dali":
            return importlib.machinery.ModuleSpec(name, _Broken(), is_package=True)
        return None

sys.meta_path.insert(0, _Finder())
"""


@pytest.fixture
def broken_env(tmp_path):
    (tmp_path / "sitecustomize.py").write_text(BROKEN_DALI)
    path = os.pathsep.join(filter(None, [str(tmp_path), str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path}


def run(code: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def test_auto_passes_over_a_broken_dali_and_kind_dali_names_the_error(broken_env, tmp_path):
    code = f"""
import logging
from adautomix.data import DataError, build_loader, dali, prepare
from tests.data.fixtures import make_image_folder
logging.basicConfig(level=logging.INFO)
assert dali.installed() and not dali.available()
from pathlib import Path
source = make_image_folder(Path({str(tmp_path / "raw")!r}), classes=("a", "b"), per_class=2,
                           per_class_test=1)
folders = prepare("image-folder", source, data_root={str(tmp_path / "data")!r})
print("auto:", build_loader(folders, "train", batch_size=2, train=True, num_workers=0).kind)
try:
    build_loader(folders, "train", batch_size=2, train=True, kind="dali")
except DataError as error:
    print("dali:", error)
"""
    result = run(code, broken_env)
    assert result.returncode == 0, result.stderr
    assert "auto: torch" in result.stdout
    assert "dali: " in result.stdout and "libnvimgcodec.so.0" in result.stdout
    # the choice and its reason are logged, so a user sees why DALI was not used
    assert "fails to import" in result.stderr and "libnvimgcodec.so.0" in result.stderr


def test_the_dali_tests_fail_rather_than_skip_when_dali_is_broken(broken_env):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/data/test_dali.py",
            "-k",
            "auto",
        ],
        cwd=ROOT,
        env=broken_env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode != 0, result.stdout[-2000:]
    assert "skipped" not in result.stdout.splitlines()[-1], result.stdout[-2000:]
    assert "libnvimgcodec.so.0" in result.stdout
