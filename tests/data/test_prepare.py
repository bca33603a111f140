"""prepare: the canonical on-disk format, its manifest and hash, atomic writes, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from adautomix.data import DataError, content_hash, ensure_dataset, load_manifest, prepare, verify
from adautomix.data.prepare import FORMAT_VERSION
from adautomix.data.sources import DEBIAN_FASHION_MNIST
from tests.data import fixtures

# name -> (train count, test count, classes) of each builder at its defaults
EXPECTED = {
    "fashion-mnist": (20, 10, 10),
    "cifar10": (20, 10, 10),
    "cifar100": (20, 10, 100),
    "tiny-imagenet": (6, 4, 3),
    "imagenet": (6, 3, 3),
    "image-folder": (6, 3, 3),
    "cub200": (6, 3, 3),
    "aircraft": (6, 3, 3),
    "cars": (6, 3, 3),
}


def all_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_prepare_every_source(tmp_path, name):
    source = fixtures.BUILDERS[name](tmp_path / "raw")
    manifest = prepare(name, source, tmp_path / "data")
    train, test, num_classes = EXPECTED[name]
    assert manifest.counts == {"train": train, "test": test}
    assert manifest.num_classes == len(manifest.classes) == num_classes
    assert manifest.root == tmp_path / "data" / name
    assert manifest == load_manifest(name, tmp_path / "data")
    assert manifest.sha256 == content_hash(manifest.root)
    assert len(manifest.mean) == len(manifest.std) == manifest.channels
    assert all(0 <= value <= 1 for value in manifest.mean + manifest.std)
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == [name]  # no temp dirs left


def test_array_format(tmp_path):
    source = fixtures.make_cifar10(tmp_path / "raw", 20, 10)
    manifest = prepare("cifar10", source, tmp_path / "data")
    root = manifest.root
    images = np.load(root / "train_images.npy")
    assert images.dtype == np.uint8 and images.shape == (20, 32, 32, 3)
    np.testing.assert_array_equal(images, fixtures.noise_images(20, 32, 3, seed=0))
    labels = np.load(root / "test_labels.npy")
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(labels, np.arange(10) % 10)
    assert manifest.format == "array" and manifest.image_size == (32, 32)
    pixels = images.reshape(-1, 3) / 255.0
    np.testing.assert_allclose(manifest.mean, pixels.mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(manifest.std, pixels.std(axis=0), atol=1e-6)
    assert sorted(p.name for p in root.iterdir()) == [
        "manifest.json",
        "test_images.npy",
        "test_labels.npy",
        "train_images.npy",
        "train_labels.npy",
    ]


def test_fashion_mnist_has_one_channel(tmp_path):
    source = fixtures.make_fashion_mnist(tmp_path / "raw")
    manifest = prepare("fashion-mnist", source, tmp_path / "data")
    assert manifest.channels == 1 and manifest.image_size == (28, 28)
    assert np.load(manifest.root / "train_images.npy").shape == (20, 28, 28, 1)


def test_folder_format_copies_bytes_and_lists_them(tmp_path):
    source = fixtures.make_image_folder(tmp_path / "raw", ("b", "a"), 2, 1, ext="png")
    manifest = prepare("image-folder", source, tmp_path / "data")
    root = manifest.root
    assert manifest.format == "folder" and manifest.image_size is None and manifest.channels == 3
    assert (root / "train_list.txt").read_text().splitlines() == [
        "train/0000/000000.png 0",
        "train/0000/000001.png 0",
        "train/0001/000002.png 1",
        "train/0001/000003.png 1",
    ]
    assert (root / "test_list.txt").read_text().splitlines() == [
        "test/0000/000000.png 0",
        "test/0001/000001.png 1",
    ]
    copied = (root / "train/0001/000003.png").read_bytes()
    assert copied == (source / "train/b/img_1.png").read_bytes()
    # the fixture's images are solid colours, so the stats are exact: the train reds are 0..3
    reds = np.arange(4)
    assert manifest.mean[0] == pytest.approx(reds.mean() / 255, abs=1e-6)
    assert manifest.std[0] == pytest.approx(reds.std() / 255, abs=1e-6)


@pytest.mark.parametrize(
    "name, builder", [("cifar100", fixtures.make_cifar100), ("cub200", fixtures.make_cub200)]
)
def test_prepare_is_deterministic(tmp_path, name, builder):
    source = builder(tmp_path / "raw")
    first = prepare(name, source, tmp_path / "one")
    second = prepare(name, source, tmp_path / "two")
    assert first.sha256 == second.sha256
    assert all_files(first.root) == all_files(second.root)  # manifests included


def test_manifest_json_is_sorted_and_complete(tmp_path):
    manifest = prepare("cifar10", fixtures.make_cifar10(tmp_path / "raw"), tmp_path / "data")
    text = (manifest.root / "manifest.json").read_text()
    values = json.loads(text)
    assert text == json.dumps(values, indent=2, sort_keys=True) + "\n"
    assert set(values) == {
        "name",
        "format",
        "classes",
        "num_classes",
        "counts",
        "image_size",
        "channels",
        "mean",
        "std",
        "sha256",
        "format_version",
        "source",
    }
    assert values["source"] == str((tmp_path / "raw" / "cifar-10-batches-py").resolve())


def test_prepared_dataset_is_reused_unless_forced(tmp_path):
    source = fixtures.make_cifar10(tmp_path / "raw")
    first = prepare("cifar10", source, tmp_path / "data")
    stamp = (first.root / "train_images.npy").stat().st_mtime_ns
    assert prepare("cifar10", tmp_path / "nowhere", tmp_path / "data") == first
    assert (first.root / "train_images.npy").stat().st_mtime_ns == stamp

    other = fixtures.make_cifar10(tmp_path / "raw2", 25, 10)
    forced = prepare("cifar10", other, tmp_path / "data", force=True)
    assert forced.counts["train"] == 25 and forced.sha256 != first.sha256
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["cifar10"]


def test_verify_catches_a_changed_file(tmp_path):
    manifest = prepare("cifar10", fixtures.make_cifar10(tmp_path / "raw"), tmp_path / "data")
    assert verify("cifar10", tmp_path / "data") == manifest
    labels = np.load(manifest.root / "train_labels.npy")
    labels[0] = 1 - labels[0]
    np.save(manifest.root / "train_labels.npy", labels)
    actual = content_hash(manifest.root)
    pattern = (
        f"cifar10 .* content hash {actual} != recorded {manifest.sha256}.*"
        "adautomix data prepare cifar10 --force.*dvc pull"
    )
    with pytest.raises(DataError, match=pattern):
        verify("cifar10", tmp_path / "data")
    with pytest.raises(DataError, match=pattern):
        prepare("cifar10", data_root=tmp_path / "data", verify=True)


def test_missing_or_stale_datasets_say_what_to_run(tmp_path):
    with pytest.raises(DataError, match=r"adautomix data prepare cars --source PATH"):
        ensure_dataset("cars", tmp_path)
    with pytest.raises(DataError, match=r"adautomix data prepare cars --source PATH"):
        load_manifest("cars", tmp_path)
    manifest = prepare("cifar10", fixtures.make_cifar10(tmp_path / "raw"), tmp_path / "data")
    path = manifest.root / "manifest.json"
    path.write_text(
        path.read_text().replace(f'"format_version": {FORMAT_VERSION}', '"format_version": 0')
    )
    with pytest.raises(DataError, match="format version 0.*--force"):
        ensure_dataset("cifar10", tmp_path / "data")
    (tmp_path / "data" / "cars").mkdir()
    with pytest.raises(DataError, match="no manifest.json.*--force"):
        prepare("cars", data_root=tmp_path / "data")


# --- bad input leaves nothing behind ----------------------------------------------------------


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def empty_class(source: Path) -> None:
    (source / "train" / "emu").mkdir()


def label_out_of_range(source: Path) -> None:
    labels = source / "CUB_200_2011" / "image_class_labels.txt"
    labels.write_text(labels.read_text().replace("4 2\n", "4 9\n"))


@pytest.mark.parametrize(
    "name, builder, damage, message",
    [
        (
            "image-folder",
            fixtures.make_image_folder,
            lambda s: truncate(s / "train" / "dog" / "img_1.jpg"),
            r"cannot decode image .*train/dog/img_1.jpg .*truncated",
        ),
        (
            "image-folder",
            fixtures.make_image_folder,
            lambda s: (s / "val" / "fox" / "img_0.jpg").write_bytes(b"not an image"),
            r"cannot decode image .*val/fox/img_0.jpg",
        ),
        (
            "aircraft",
            fixtures.make_aircraft,
            lambda s: (s / "fgvc-aircraft-2013b" / "data" / "images" / "1000004.jpg").unlink(),
            r"image .*1000004.jpg is missing",
        ),
        (
            "image-folder",
            fixtures.make_image_folder,
            empty_class,
            r"class folder .*emu has no images",
        ),
        (
            "cub200",
            fixtures.make_cub200,
            label_out_of_range,
            r"image_class_labels.txt: image 4 has class 9, outside 1..3",
        ),
        (
            "fashion-mnist",
            fixtures.make_fashion_mnist,
            lambda s: truncate(s / "t10k-labels-idx1-ubyte.gz"),
            r"t10k-labels-idx1-ubyte.gz",
        ),
    ],
)
def test_bad_input_raises_and_leaves_data_root_clean(tmp_path, name, builder, damage, message):
    source = builder(tmp_path / "raw")
    damage(source)
    data_root = tmp_path / "data"
    with pytest.raises(DataError, match=message):
        prepare(name, source, data_root)
    assert not data_root.exists() or list(data_root.iterdir()) == []


def test_failed_force_keeps_the_old_copy(tmp_path):
    source = fixtures.make_image_folder(tmp_path / "raw")
    good = prepare("image-folder", source, tmp_path / "data")
    truncate(source / "train" / "cat" / "img_0.jpg")
    with pytest.raises(DataError, match="img_0.jpg"):
        prepare("image-folder", source, tmp_path / "data", force=True)
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["image-folder"]
    assert verify("image-folder", tmp_path / "data") == good


@pytest.mark.skipif(
    not DEBIAN_FASHION_MNIST.is_dir(), reason="Debian's dataset-fashion-mnist is not installed"
)
def test_real_fashion_mnist(tmp_path):
    manifest = ensure_dataset("fashion-mnist", tmp_path)  # no source: prepared on first use
    assert manifest.counts == {"train": 60000, "test": 10000}
    assert manifest.classes[0] == "T-shirt/top" and manifest.classes[9] == "Ankle boot"
    assert manifest.mean[0] == pytest.approx(0.2860, abs=1e-3)
    assert manifest.std[0] == pytest.approx(0.3530, abs=1e-3)
    labels = np.load(manifest.root / "train_labels.npy")
    np.testing.assert_array_equal(np.bincount(labels), [6000] * 10)
