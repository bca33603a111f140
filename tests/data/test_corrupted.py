"""Corrupted test sets as prepared datasets: the official CIFAR-C layout read, generated sets
made once from a prepared dataset, bad folders refused with the file at fault named."""

from __future__ import annotations

import numpy as np
import pytest

from adautomix.cli import main
from adautomix.data import prepare, verify
from adautomix.data.corrupted import ensure_corrupted, prepare_corrupted
from adautomix.data.corruptions import CORRUPTIONS, corrupt
from adautomix.data.errors import DataError
from tests.data.fixtures import make_fashion_mnist, noise_images

PER_SEVERITY = 4


def make_cifar_c(root, per_severity: int = PER_SEVERITY, classes: int = 100):
    """The official release's layout: <corruption>.npy with 5 severities × N images each (the
    image's index as its top-left pixel value), labels.npy with 5 × N labels."""
    root.mkdir(parents=True)
    labels = np.tile(np.arange(per_severity) % classes, 5).astype(np.uint8)
    for i, name in enumerate(CORRUPTIONS):
        images = noise_images(5 * per_severity, 32, 3, seed=i)
        images[:, 0, 0, 0] = np.arange(5 * per_severity)
        np.save(root / f"{name}.npy", images)
    np.save(root / "labels.npy", labels)
    return root


def test_the_official_layout_becomes_95_splits_one_per_corruption_and_severity(tmp_path):
    source = make_cifar_c(tmp_path / "CIFAR-100-C")
    manifest = prepare_corrupted("cifar100-c", source=source, data_root=tmp_path / "data")
    assert len(manifest.counts) == 95 and set(manifest.counts.values()) == {PER_SEVERITY}
    assert (manifest.num_classes, manifest.channels, manifest.image_size) == (100, 3, (32, 32))
    root = tmp_path / "data" / "cifar100-c"
    fog = np.load(source / "fog.npy")
    stored = np.load(root / "fog-3_images.npy")
    np.testing.assert_array_equal(stored, fog[2 * PER_SEVERITY : 3 * PER_SEVERITY])
    assert stored[:, 0, 0, 0].tolist() == list(range(8, 12))  # severity 3 = rows 2N..3N
    np.testing.assert_array_equal(np.load(root / "fog-3_labels.npy"), np.arange(PER_SEVERITY))
    assert verify("cifar100-c", data_root=tmp_path / "data").sha256 == manifest.sha256


def test_a_missing_corruption_file_is_named(tmp_path):
    source = make_cifar_c(tmp_path / "c")
    (source / "spatter.npy").unlink()
    with pytest.raises(DataError, match="lacks spatter.npy"):
        prepare_corrupted("cifar100-c", source=source, data_root=tmp_path / "data")
    assert not (tmp_path / "data" / "cifar100-c").exists()


def test_a_label_count_that_does_not_match_is_refused(tmp_path, capsys):
    source = make_cifar_c(tmp_path / "c")
    np.save(source / "labels.npy", np.zeros(5 * PER_SEVERITY - 1, np.uint8))
    assert (
        main(
            [
                "data",
                "prepare",
                "cifar10-c",
                "--source",
                str(source),
                "--data-root",
                str(tmp_path / "data"),
            ]
        )
        == 2
    )
    error = capsys.readouterr().err
    assert error.startswith("error: ") and "one per label" in error and error.count("\n") == 1
    assert not (tmp_path / "data" / "cifar10-c").exists()


def test_a_generated_set_is_the_test_split_corrupted_with_a_fixed_seed(tmp_path, capsys):
    data_root = tmp_path / "data"
    clean = prepare(
        "fashion-mnist", source=make_fashion_mnist(tmp_path / "raw"), data_root=data_root
    )
    assert main(["data", "prepare", "fashion-mnist-c", "--data-root", str(data_root)]) == 0
    assert "dvc add" in capsys.readouterr().out
    manifest = ensure_corrupted(clean)
    assert len(manifest.counts) == 95 and manifest.channels == 1
    test_images = np.load(data_root / "fashion-mnist" / "test_images.npy")
    np.testing.assert_array_equal(
        np.load(data_root / "fashion-mnist-c" / "snow-4_images.npy"),
        corrupt(test_images, "snow", 4, seed=0),
    )
    assert clean.sha256 in manifest.source
    # prepared once: asking again neither regenerates nor changes it
    again = ensure_corrupted(clean)
    assert again.sha256 == manifest.sha256
