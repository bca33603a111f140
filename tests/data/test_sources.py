"""The raw-format readers, on fixtures written in each dataset's real on-disk format."""

from __future__ import annotations

import gzip
import pickle

import numpy as np
import pytest
import scipy.io

from adautomix.config import DATASETS
from adautomix.data import DataError, read_source, sources
from tests.data import fixtures


def test_every_configured_dataset_has_a_reader_and_a_fixture():
    assert set(sources.READERS) | {"fashion-mnist"} == set(DATASETS)
    assert set(fixtures.BUILDERS) == set(DATASETS)
    assert set(sources.LAYOUTS) == set(DATASETS)


def test_fashion_mnist_idx(tmp_path):
    raw = read_source("fashion-mnist", fixtures.make_fashion_mnist(tmp_path, 20, 10))
    assert raw.format == "array" and raw.classes == sources.FASHION_MNIST_CLASSES
    images, labels = raw.splits["train"]
    assert images.shape == (20, 28, 28, 1) and images.dtype == np.uint8
    np.testing.assert_array_equal(images, fixtures.noise_images(20, 28, 1, seed=0))
    np.testing.assert_array_equal(labels, np.arange(20) % 10)
    assert labels.dtype == np.int64
    assert raw.splits["test"][0].shape == (10, 28, 28, 1)


@pytest.mark.parametrize(
    "name, builder, num_classes",
    [("cifar10", fixtures.make_cifar10, 10), ("cifar100", fixtures.make_cifar100, 100)],
)
def test_cifar_pickles(tmp_path, name, builder, num_classes):
    raw = read_source(name, builder(tmp_path, 23, 7))
    assert raw.format == "array" and len(raw.classes) == num_classes
    images, labels = raw.splits["train"]
    # CIFAR rows are channel-major on disk; the reader must give back the images written.
    np.testing.assert_array_equal(images, fixtures.noise_images(23, 32, 3, seed=0))
    np.testing.assert_array_equal(labels, np.arange(23) % num_classes)
    np.testing.assert_array_equal(raw.splits["test"][0], fixtures.noise_images(7, 32, 3, seed=1))


def test_cifar_accepts_the_dataset_folder_itself(tmp_path):
    raw = read_source("cifar10", fixtures.make_cifar10(tmp_path) / "cifar-10-batches-py")
    assert len(raw.splits["train"][1]) == 20


def test_tiny_imagenet(tmp_path):
    raw = read_source("tiny-imagenet", fixtures.make_tiny_imagenet(tmp_path, 3, 2, 4))
    images, labels = raw.splits["train"]
    assert raw.format == "array" and images.shape == (6, 64, 64, 3)
    # wnids.txt lists the classes in descending order; indices follow the sorted wnids
    assert raw.classes == ["thing 2, other name", "thing 1, other name", "thing 0, other name"]
    np.testing.assert_array_equal(labels, [0, 0, 1, 1, 2, 2])
    test_images, test_labels = raw.splits["test"]
    assert test_images.shape == (4, 64, 64, 3)
    np.testing.assert_array_equal(test_labels, [2, 1, 0, 2])  # val_k has wnids[k % 3]


@pytest.mark.parametrize("test_dir", ["val", "test"])
def test_image_folder(tmp_path, test_dir):
    source = fixtures.make_image_folder(tmp_path, ("dog", "cat", "fox"), 2, 1, test_dir=test_dir)
    raw = read_source("image-folder", source)
    assert raw.format == "folder" and raw.classes == ["cat", "dog", "fox"]
    assert [label for _, label in raw.splits["train"]] == [0, 0, 1, 1, 2, 2]
    assert [(p.parent.name, label) for p, label in raw.splits["test"]] == [
        ("cat", 0),
        ("dog", 1),
        ("fox", 2),
    ]


def test_cub200(tmp_path):
    raw = read_source("cub200", fixtures.make_cub200(tmp_path, 3, 3))
    assert raw.classes == ["001.Bird_1", "002.Bird_2", "003.Bird_3"]
    assert [label for _, label in raw.splits["train"]] == [0, 0, 1, 1, 2, 2]
    assert [(p.name, label) for p, label in raw.splits["test"]] == [
        ("Bird_1_2.jpg", 0),
        ("Bird_2_2.jpg", 1),
        ("Bird_3_2.jpg", 2),
    ]


def test_aircraft_variants_with_spaces(tmp_path):
    raw = read_source("aircraft", fixtures.make_aircraft(tmp_path))
    assert raw.classes == ["707-320", "A320", "Cessna 172"]
    assert [label for _, label in raw.splits["train"]] == [0, 0, 1, 1, 2, 2]
    assert [label for _, label in raw.splits["test"]] == [0, 1, 2]
    assert all(path.exists() for path, _ in raw.splits["train"] + raw.splits["test"])


def test_cars_mat_files(tmp_path):
    raw = read_source("cars", fixtures.make_cars(tmp_path, 3, 2, 1))
    assert raw.classes == ["Maker Model 0 2012", "Maker Model 1 2012", "Maker Model 2 2012"]
    assert [label for _, label in raw.splits["train"]] == [0, 0, 1, 1, 2, 2]  # 1-based on disk
    assert [(p.parent.name, label) for p, label in raw.splits["test"]] == [
        ("cars_test", 0),
        ("cars_test", 1),
        ("cars_test", 2),
    ]
    assert all(path.exists() for path, _ in raw.splits["train"] + raw.splits["test"])


# --- bad input ----------------------------------------------------------------------------------


def test_dataset_without_source_says_how(tmp_path):
    with pytest.raises(DataError, match="--source PATH"):
        read_source("cifar10")
    with pytest.raises(DataError, match="unknown dataset 'mnist'"):
        read_source("mnist")
    with pytest.raises(DataError, match="cifar-10-batches-py"):
        read_source("cifar10", tmp_path)


def test_truncated_idx_gzip_names_the_file(tmp_path):
    source = fixtures.make_fashion_mnist(tmp_path)
    path = source / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz.*corrupt or truncated"):
        read_source("fashion-mnist", source)


def test_idx_shorter_than_its_header_says(tmp_path):
    source = fixtures.make_fashion_mnist(tmp_path)
    path = source / "t10k-images-idx3-ubyte.gz"
    content = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(content[:-28]))  # a whole image missing, gzip intact
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte.gz holds 7812 bytes .* 7840"):
        read_source("fashion-mnist", source)


def test_idx_with_a_wrong_magic(tmp_path):
    source = fixtures.make_fashion_mnist(tmp_path)
    not_bytes = b"\x00\x00\x0d\x01" + bytes(24)  # type code 0x0d: float32
    (source / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(not_bytes))
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz is not an IDX file"):
        read_source("fashion-mnist", source)


def test_truncated_cifar_pickle_names_the_file(tmp_path):
    source = fixtures.make_cifar10(tmp_path)
    path = source / "cifar-10-batches-py" / "data_batch_3"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DataError, match="data_batch_3 is not a readable CIFAR pickle"):
        read_source("cifar10", source)


def test_label_out_of_range_names_the_file(tmp_path):
    source = fixtures.make_cifar10(tmp_path)
    path = source / "cifar-10-batches-py" / "test_batch"
    batch = pickle.loads(path.read_bytes())
    batch["labels"][4] = 10
    path.write_bytes(pickle.dumps(batch))
    with pytest.raises(DataError, match=r"test_batch: label 10 \(item 4\) is outside \[0, 10\)"):
        read_source("cifar10", source)


def test_cars_label_out_of_range(tmp_path):
    source = fixtures.make_cars(tmp_path)
    annotations = fixtures.cars_annotations(["00001.jpg"] * 2, [1, 4])  # 4 > 3 classes
    scipy.io.savemat(source / "cars_test_annos_withlabels.mat", {"annotations": annotations})
    with pytest.raises(DataError, match=r"cars_test_annos_withlabels.mat: label 3 .* \[0, 3\)"):
        read_source("cars", source)


def test_empty_class_folder_is_named(tmp_path):
    source = fixtures.make_image_folder(tmp_path)
    (source / "train" / "emu").mkdir()
    (source / "train" / "emu" / "notes.txt").write_text("no images here")
    with pytest.raises(DataError, match=r"class folder .*train/emu has no images"):
        read_source("image-folder", source)


def test_test_class_missing_from_train(tmp_path):
    source = fixtures.make_image_folder(tmp_path)
    (source / "val" / "yak").mkdir()
    with pytest.raises(DataError, match=r"val/yak has no counterpart"):
        read_source("image-folder", source)


def test_empty_split(tmp_path):
    source = fixtures.make_cub200(tmp_path)
    split_file = source / "CUB_200_2011" / "train_test_split.txt"
    split_file.write_text(split_file.read_text().replace(" 0\n", " 1\n"))  # no test images left
    with pytest.raises(DataError, match=r"test split read from .*train_test_split.txt is empty"):
        read_source("cub200", source)


def test_unknown_aircraft_variant(tmp_path):
    source = fixtures.make_aircraft(tmp_path)
    listing = source / "fgvc-aircraft-2013b" / "data" / "images_variant_test.txt"
    listing.write_text(listing.read_text() + "1999999 Concorde\n")
    with pytest.raises(DataError, match="image 1999999 has variant 'Concorde'"):
        read_source("aircraft", source)


def test_tiny_imagenet_corrupt_jpeg_names_the_file(tmp_path):
    source = fixtures.make_tiny_imagenet(tmp_path)
    path = source / "tiny-imagenet-200" / "val" / "images" / "val_1.JPEG"
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(DataError, match="cannot decode image .*val_1.JPEG"):
        read_source("tiny-imagenet", source)


def test_fashion_mnist_with_no_way_to_get_it_names_both_ways(tmp_path, monkeypatch):
    import torchvision.datasets

    def offline(*args, **kwargs):
        raise RuntimeError("Name or service not known")

    monkeypatch.setattr(sources, "DEBIAN_FASHION_MNIST", tmp_path / "absent")
    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", offline)
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist.*internet"):
        read_source("fashion-mnist", download_dir=tmp_path / "downloads")
