"""The DALI loader against the reference loaders (memory.py, torch_loader.py), on tiny prepared
datasets.

The array dataset is a CIFAR-100 fixture with fewer images than classes, so a label names its
image. The folder dataset has one solid-colour image per class, so a label names its image and
its colour survives any crop and resize.
"""

from __future__ import annotations

import logging
import re
import shutil

import numpy as np
import pytest
import torch

from adautomix.data import DataError, build_loader, dali, load_manifest, prepare
from tests.data.fixtures import make_cifar100, make_image_folder, solid_image

# DALI is pinned in the lock: where it is installed, these tests run, and a DALI that fails to
# import fails them (here, with its import error) instead of skipping them. Only an environment
# installed without the `dali` extra skips.
if not dali.installed():
    pytest.skip("NVIDIA DALI is not installed (the dali extra)", allow_module_level=True)
if not dali.available():
    raise ImportError(dali.import_error())

# Odd, so that the two test shards differ in length (4 and 5 images, batches of 4).
FOLDER_CLASSES = 9


@pytest.fixture(scope="module")
def arrays(tmp_path_factory):
    root = tmp_path_factory.mktemp("arrays")
    source = make_cifar100(root / "raw", n_train=40, n_test=9)
    return prepare("cifar100", source, data_root=root / "data")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("folders")
    classes = tuple(f"c{i:02d}" for i in range(FOLDER_CLASSES))
    source = make_image_folder(root / "raw", classes=classes, per_class=1, per_class_test=1)
    return prepare("image-folder", source, data_root=root / "data")


def load(
    manifest,
    split="train",
    *,
    kind="dali",
    train=True,
    batch_size=4,
    seed=0,
    epoch=0,
    image_size=None,
    **options,
):
    if image_size is None and manifest.format == "folder":
        image_size = 16  # not the default 224: keep the tests fast
    loader = build_loader(
        manifest,
        split,
        batch_size=batch_size,
        train=train,
        kind=kind,
        seed=seed,
        num_workers=0 if kind == "torch" else 1,
        image_size=image_size,
        **options,
    )
    loader.set_epoch(epoch)
    return loader


def epoch(loader):
    """One epoch's images and labels, concatenated."""
    images, labels = zip(*loader)
    return torch.cat(images), torch.cat(labels)


def test_array_test_split_equals_the_torch_loader(arrays):
    reference = load(arrays, "test", kind="torch", train=False)
    loader = load(arrays, "test", train=False)
    assert (loader.kind, len(loader), loader.num_classes, loader.in_chans) == ("dali", 3, 100, 3)
    for (images, labels), (expected, expected_labels) in zip(loader, reference, strict=True):
        assert images.dtype == torch.float32 and labels.dtype == torch.int64
        assert images.shape == expected.shape and labels.shape == expected_labels.shape
        torch.testing.assert_close(images, expected)
        assert torch.equal(labels, expected_labels)


def test_array_resize_equals_the_memory_loader(arrays):
    images, _ = epoch(load(arrays, "test", train=False, image_size=40))
    expected, _ = epoch(load(arrays, "test", kind="memory", train=False, image_size=40))
    assert images.shape == (9, 3, 40, 40)
    # DALI resizes uint8 images (rounded, as torchvision), the memory loader floats.
    torch.testing.assert_close(images, expected, atol=0.5 / 255 / min(arrays.std) + 1e-4, rtol=0)


def test_array_train_images_are_flipped_crops_of_the_reflect_padded_image(arrays):
    source = np.load(arrays.root / "train_images.npy")
    mean, std = np.array(arrays.mean), np.array(arrays.std)
    images, labels = epoch(load(arrays))
    assert images.shape == (40, 3, 32, 32) and labels.tolist() != sorted(labels.tolist())
    pad, offsets_seen = 4, set()
    for image, label in zip(images.numpy(), labels.tolist()):
        pixels = np.rint((image.transpose(1, 2, 0) * std + mean) * 255)
        padded = np.pad(source[label], ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
        matches = [
            (dy, dx, flip)
            for dy in range(2 * pad + 1)
            for dx in range(2 * pad + 1)
            for flip in (False, True)
            if np.array_equal(pixels, _crop(padded, dy, dx, 32, flip))
        ]
        assert len(matches) == 1, f"image of label {label} is no flipped crop of its source"
        offsets_seen.add(matches[0])
    assert len(offsets_seen) > 20  # the crops really are random


def _crop(padded, dy, dx, size, flip):
    crop = padded[dy : dy + size, dx : dx + size]
    return crop[:, ::-1] if flip else crop


def test_folder_test_split_equals_the_torch_loader(folders):
    images, labels = epoch(load(folders, "test", train=False))
    expected, expected_labels = epoch(load(folders, "test", kind="torch", train=False))
    assert images.shape == expected.shape == (FOLDER_CLASSES, 3, 16, 16)
    assert torch.equal(labels, expected_labels)
    # Solid colours: only the two JPEG decoders' rounding differs (a few grey levels).
    torch.testing.assert_close(images, expected, atol=4 / 255 / min(folders.std), rtol=0)


def test_folder_train_images_keep_the_colour_of_their_label(folders):
    images, labels = epoch(load(folders, batch_size=5))
    assert images.shape == (5, 3, 16, 16) and images.dtype == torch.float32
    mean = torch.tensor(folders.mean).view(3, 1, 1)
    std = torch.tensor(folders.std).view(3, 1, 1)
    for image, label in zip(images, labels.tolist()):
        colour = torch.tensor(solid_image(label).getpixel((0, 0)), dtype=torch.float32)
        pixels = (image * std + mean) * 255
        assert (pixels - colour.view(3, 1, 1)).abs().max() < 4, f"label {label}"


@pytest.mark.parametrize("dataset", ["arrays", "folders"])
@pytest.mark.parametrize("split", ["train", "test"])
def test_every_sample_once_per_epoch_across_ranks(request, dataset, split):
    manifest = request.getfixturevalue(dataset)
    train, world_size = split == "train", 2
    seen = []
    for rank in range(world_size):
        loader = load(manifest, split, train=train, epoch=3, rank=rank, world_size=world_size)
        sizes = [len(labels) for _, labels in loader]
        assert len(sizes) == len(loader) and 0 not in sizes
        _, labels = epoch(loader)
        # The shared epoch plan, in its order: the same images as every other loader kind.
        assert labels.tolist() == loader.labels[loader.indices()].tolist()
        seen += labels.tolist()
    assert len(seen) == len(set(seen))
    count = manifest.counts[split]
    if train:  # each rank drops its partial last batch and no more
        assert len(seen) == world_size * (count // world_size // 4 * 4)
    else:
        assert sorted(seen) == list(range(count))


@pytest.mark.parametrize("dataset", ["arrays", "folders"])
def test_an_epoch_is_a_function_of_seed_and_epoch(request, dataset):
    manifest = request.getfixturevalue(dataset)
    loader = load(manifest)
    first = epoch(loader)
    loader.set_epoch(1)
    second = epoch(loader)
    loader.set_epoch(0)
    again = epoch(loader)
    resumed = epoch(load(manifest, epoch=1))
    other_seed = epoch(load(manifest, seed=1))
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert all(torch.equal(a, b) for a, b in zip(second, resumed))
    assert not torch.equal(first[1], second[1])
    assert not torch.equal(first[1], other_seed[1])
    if dataset == "arrays":  # folder images are solid colours: augmentation cannot show
        by_label = [images[labels.argsort()] for images, labels in (first, other_seed)]
        assert not torch.equal(*by_label)


@pytest.mark.parametrize(
    "damage",
    [lambda data: data[: len(data) // 2], lambda data: b"not an image " * 20],
    ids=["truncated", "garbage"],
)
def test_a_corrupt_image_is_named(folders, tmp_path, damage):
    # prepare() refuses corrupt images, so damage a prepared copy, as a bad disk would.
    shutil.copytree(folders.root, tmp_path / folders.name)
    bad = tmp_path / folders.name / "train" / "0007" / "000007.jpg"
    bad.write_bytes(damage(bad.read_bytes()))
    manifest = load_manifest(folders.name, tmp_path)
    with pytest.raises(DataError, match=re.escape(str(bad))):
        epoch(load(manifest, batch_size=2))


def test_auto_picks_the_fastest_kind_measured_and_logs_its_choice(
    folders, arrays, caplog, monkeypatch
):
    """docs/benchmarks.md: on arrays memory is 4x DALI; on JPEG folders DALI is 1.6x torch."""
    with caplog.at_level(logging.INFO, logger="adautomix.data"):
        assert load(folders, kind="auto").kind == "dali"
        assert load(arrays, kind="auto").kind == "memory"
    assert "loader auto: dali for image-folder" in caplog.text
    assert "loader auto: memory for cifar100" in caplog.text
    monkeypatch.setattr(dali, "available", lambda: False)
    assert load(folders, kind="auto").kind == "torch"
    assert load(arrays, kind="auto").kind == "memory"
    with pytest.raises(DataError, match="--loader torch"):
        load(folders)


@pytest.mark.gpu
@pytest.mark.parametrize("dataset", ["arrays", "folders"])
def test_gpu_pipeline_equals_the_cpu_one(request, dataset):
    manifest = request.getfixturevalue(dataset)
    images, labels = epoch(load(manifest, "test", train=False, device="cuda"))
    expected, expected_labels = epoch(load(manifest, "test", train=False))
    assert images.device.type == labels.device.type == "cuda"
    assert torch.equal(labels.cpu(), expected_labels)
    torch.testing.assert_close(images.cpu(), expected, atol=4 / 255 / min(manifest.std), rtol=0)
    train_images, _ = epoch(load(manifest, device="cuda"))
    assert train_images.is_cuda and train_images.dtype == torch.float32
