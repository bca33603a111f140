"""The data a run trains on is the data its records name: the content hash covers the manifest,
ensure_dataset checks the bytes against it (in full once, then by file stamps), and labels
outside the classes are refused before anything trains on them."""

from __future__ import annotations

import importlib
import json
import os

import numpy as np
import pytest

from adautomix.data import DataError, content_hash, ensure_dataset, prepare, verify
from tests.data import fixtures

prepare_module = importlib.import_module(
    "adautomix.data.prepare"
)  # the name `prepare` is the function


@pytest.fixture
def cifar10(tmp_path):
    return prepare("cifar10", fixtures.make_cifar10(tmp_path / "raw"), tmp_path / "data")


def flip_one_byte(path, keep_times=False):
    stat = path.stat()
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    if keep_times:  # what a careful tamperer does; ctime moves all the same
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


@pytest.mark.parametrize("keep_times", [False, True])
def test_a_byte_flipped_after_a_verified_run_is_caught(cifar10, keep_times):
    ensure_dataset("cifar10", cifar10.root.parent)  # hashed in full, recorded
    flip_one_byte(cifar10.root / "train_images.npy", keep_times)
    with pytest.raises(DataError, match="does not match its manifest"):
        ensure_dataset("cifar10", cifar10.root.parent)


@pytest.mark.parametrize(
    "field,value",
    [("channels", 1), ("classes", [f"c{i}" for i in range(10)]), ("mean", [0.5, 0.5, 0.5])],
)
def test_editing_the_manifest_changes_the_content_hash(cifar10, field, value):
    path = cifar10.root / "manifest.json"
    values = json.loads(path.read_text())
    values[field] = value
    path.write_text(json.dumps(values))
    with pytest.raises(DataError, match="does not match its manifest"):
        verify("cifar10", cifar10.root.parent)


def test_the_raw_source_path_is_provenance_not_content(cifar10):
    path = cifar10.root / "manifest.json"
    values = json.loads(path.read_text())
    path.write_text(json.dumps({**values, "source": "/elsewhere"}))
    assert content_hash(cifar10.root) == cifar10.sha256


def test_a_verified_version_costs_a_stat_per_file_until_a_file_changes(cifar10, monkeypatch):
    data_root = cifar10.root.parent
    ensure_dataset("cifar10", data_root)
    assert (data_root / ".cifar10.verified.json").exists()
    hashed = []
    real_hash = prepare_module.content_hash
    monkeypatch.setattr(
        prepare_module, "content_hash", lambda *a: hashed.append(a) or real_hash(*a)
    )
    ensure_dataset("cifar10", data_root)
    assert hashed == []
    (cifar10.root / "test_labels.npy").touch()  # same bytes, new stamp: hashed again
    ensure_dataset("cifar10", data_root)
    assert len(hashed) == 1


def test_labels_outside_the_classes_are_refused_even_with_a_matching_hash(cifar10):
    labels = np.load(cifar10.root / "train_labels.npy")
    labels[3] = 10  # 10 classes: 0..9
    np.save(cifar10.root / "train_labels.npy", labels)
    path = cifar10.root / "manifest.json"
    values = json.loads(path.read_text())
    path.write_text(json.dumps({**values, "sha256": content_hash(cifar10.root)}))  # re-signed
    with pytest.raises(
        DataError, match=r"train labels span 0\.\.10, outside the manifest's 10 classes"
    ):
        ensure_dataset("cifar10", cifar10.root.parent)


def test_folder_labels_are_checked_too(tmp_path):
    manifest = prepare("cub200", fixtures.make_cub200(tmp_path / "raw"), tmp_path / "data")
    lists = manifest.root / "test_list.txt"
    lists.write_text(lists.read_text().replace(" 0\n", " 7\n", 1))
    path = manifest.root / "manifest.json"
    values = json.loads(path.read_text())
    path.write_text(json.dumps({**values, "sha256": content_hash(manifest.root)}))
    with pytest.raises(DataError, match="test labels span"):
        ensure_dataset("cub200", tmp_path / "data")
