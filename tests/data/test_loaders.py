"""build_loader: shapes, normalisation, the epoch plan (each sample once, sharding, subsets),
determinism under a seed, and the augmentations of both kinds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from adautomix.data import DataError, Recipe, build_loader, prepare
from tests.data import fixtures


@pytest.fixture(scope="module")
def cifar100(tmp_path_factory):
    """100 train images, one per class, so a label names its image; 30 test images."""
    root = tmp_path_factory.mktemp("cifar100")
    return prepare("cifar100", fixtures.make_cifar100(root / "raw", 100, 30), root / "data")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Lossless solid-colour PNGs, 18 train and 6 test images, whose red values are 0..23."""
    root = tmp_path_factory.mktemp("folder")
    source = fixtures.make_image_folder(root / "raw", ("a", "b", "c"), 6, 2, ext="png")
    return prepare("image-folder", source, root / "data")


def collect(loader):
    batches = list(loader)
    return torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])


def denormalise(images, loader):
    mean = torch.tensor(loader.mean).view(1, -1, 1, 1)
    std = torch.tensor(loader.std).view(1, -1, 1, 1)
    return (images * std + mean) * 255


@pytest.mark.parametrize("kind", ["memory", "torch"])
def test_train_batches_cover_each_sample_once(cifar100, kind):
    loader = build_loader(cifar100, "train", batch_size=16, train=True, kind=kind, num_workers=0)
    assert loader.kind == kind and len(loader) == 6  # 100 // 16, the partial batch dropped
    assert (loader.num_classes, loader.in_chans, loader.image_size) == (100, 3, 32)
    images, labels = collect(loader)
    assert images.shape == (96, 3, 32, 32) and images.dtype == torch.float32
    assert labels.dtype == torch.int64 and len(set(labels.tolist())) == 96
    assert labels.tolist() != sorted(labels.tolist())  # shuffled
    low = (0 - torch.tensor(loader.mean)) / torch.tensor(loader.std)
    high = (1 - torch.tensor(loader.mean)) / torch.tensor(loader.std)
    per_channel = images.transpose(0, 1).reshape(3, -1)
    assert (per_channel.min(1).values >= low - 1e-5).all()
    assert (per_channel.max(1).values <= high + 1e-5).all()


@pytest.mark.parametrize("kind", ["memory", "torch"])
def test_train_images_are_reflect_padded_crops_and_flips_of_their_source(cifar100, kind):
    loader = build_loader(cifar100, "train", batch_size=8, train=True, kind=kind, num_workers=0)
    images, labels = next(iter(loader))
    pixels = denormalise(images, loader).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    stored = np.load(cifar100.root / "train_images.npy")
    flipped = 0
    for image, label in zip(pixels, labels.tolist(), strict=True):
        padded = np.pad(stored[label], ((4, 4), (4, 4), (0, 0)), mode="reflect")
        crops = [
            (padded[y : y + 32, x : x + 32], flip)
            for y in range(9)
            for x in range(9)
            for flip in (False, True)
        ]
        matches = [
            flip for crop, flip in crops if np.array_equal(crop[:, ::-1] if flip else crop, image)
        ]
        assert matches, f"sample {label} is no crop/flip of its source image"
        flipped += matches[0]
    assert 0 < flipped < 8


def test_test_split_is_in_order_unaugmented_and_keeps_the_partial_batch(cifar100):
    memory = build_loader(cifar100, "test", batch_size=8, train=False, kind="memory")
    torch_kind = build_loader(
        cifar100, "test", batch_size=8, train=False, kind="torch", num_workers=0
    )
    assert len(memory) == len(torch_kind) == 4
    memory_images, memory_labels = collect(memory)
    torch_images, torch_labels = collect(torch_kind)
    assert memory_images.shape == (30, 3, 32, 32)
    assert memory_labels.tolist() == torch_labels.tolist() == list(range(30))
    torch.testing.assert_close(memory_images, torch_images)
    stored = torch.from_numpy(np.load(cifar100.root / "test_images.npy")).permute(0, 3, 1, 2)
    torch.testing.assert_close(
        denormalise(memory_images, memory), stored.float(), atol=1e-3, rtol=0
    )


@pytest.mark.parametrize("kind", ["memory", "torch"])
def test_epochs_are_reproducible_under_a_seed(cifar100, kind):
    def epoch(seed, number):
        loader = build_loader(
            cifar100,
            "train",
            batch_size=20,
            train=True,
            kind=kind,
            seed=seed,
            subset=40,
            num_workers=0,
        )
        loader.set_epoch(number)
        return collect(loader)

    images, labels = epoch(0, 3)
    again_images, again_labels = epoch(0, 3)
    torch.testing.assert_close(images, again_images, rtol=0, atol=0)
    assert labels.tolist() == again_labels.tolist()
    assert epoch(0, 4)[1].tolist() != labels.tolist()
    assert epoch(1, 3)[1].tolist() != labels.tolist()


def test_torch_loader_augmentation_does_not_depend_on_workers(cifar100):
    runs = []
    for workers in (0, 2):
        loader = build_loader(
            cifar100, "train", batch_size=25, train=True, kind="torch", num_workers=workers
        )
        loader.set_epoch(1)
        runs.append(collect(loader))
    torch.testing.assert_close(runs[0][0], runs[1][0], rtol=0, atol=0)


@pytest.mark.parametrize("kind", ["memory", "torch"])
def test_ranks_read_disjoint_slices(cifar100, kind):
    train, test = [], []
    for rank in range(3):
        options = dict(kind=kind, rank=rank, world_size=3, num_workers=0)
        loader = build_loader(cifar100, "train", batch_size=10, train=True, **options)
        assert len(loader) == 3  # 100 // 3 = 33 each, 3 whole batches
        train.append(collect(loader)[1].tolist())
        test.append(
            collect(build_loader(cifar100, "test", batch_size=4, train=False, **options))[
                1
            ].tolist()
        )
    assert all(len(labels) == 30 for labels in train)
    assert len(set(sum(train, []))) == 90  # no sample on two ranks
    assert sum(test, []) == list(range(30))  # every test sample exactly once


@pytest.mark.parametrize("kind", ["memory", "torch"])
@pytest.mark.parametrize("crop", ["pad", "flip", "rrc"])
def test_ranks_read_the_global_batches_of_one_process(cifar100, kind, crop):
    # Step s of 2 ranks with 5 images each: the images, and augmentation, of step s of one
    # process with 10 (distributed training and resuming on another number of ranks rely on it).
    recipe = Recipe.resolve(cifar100, train_crop=crop)

    def batches(rank, world_size, batch_size):
        loader = build_loader(
            cifar100,
            "train",
            batch_size=batch_size,
            train=True,
            kind=kind,
            num_workers=0,
            seed=3,
            rank=rank,
            world_size=world_size,
            recipe=recipe,
        )
        loader.set_epoch(2)
        return list(loader)

    one = batches(0, 1, 10)
    ranks = [batches(rank, 2, 5) for rank in range(2)]
    assert len(one) == len(ranks[0]) == len(ranks[1]) == 10
    for step, (images, labels) in enumerate(one):
        (first, first_labels), (second, second_labels) = ranks[0][step], ranks[1][step]
        # rank r holds the global batch's places r, r + 2, r + 4, ...
        assert torch.equal(labels[0::2], first_labels) and torch.equal(labels[1::2], second_labels)
        torch.testing.assert_close(images[0::2], first, rtol=0, atol=1e-5)
        torch.testing.assert_close(images[1::2], second, rtol=0, atol=1e-5)


def test_subset_is_a_fixed_sample_whatever_the_seed(cifar100):
    seen = []
    for seed in (0, 1):
        loader = build_loader(
            cifar100, "train", batch_size=10, train=True, kind="memory", seed=seed, subset=40
        )
        seen.append(collect(loader)[1].tolist())
    assert len(seen[0]) == 40 and seen[0] != seen[1] and set(seen[0]) == set(seen[1])
    test = collect(
        build_loader(cifar100, "test", batch_size=10, train=False, kind="memory", subset=12)
    )[1]
    assert len(test) == 12 and test.tolist() == sorted(test.tolist())


@pytest.mark.parametrize("kind", ["memory", "torch"])
def test_array_images_can_be_resized(cifar100, kind):
    for train in (True, False):
        loader = build_loader(
            cifar100, "train", batch_size=4, train=train, kind=kind, image_size=16, num_workers=0
        )
        images, _ = next(iter(loader))
        assert loader.image_size == 16 and images.shape == (4, 3, 16, 16)


def test_folder_train_loader(folder):
    loader = build_loader(
        folder, "train", batch_size=4, train=True, kind="torch", image_size=24, num_workers=0
    )
    assert len(loader) == 4 and loader.num_classes == 3
    images, labels = collect(loader)
    assert images.shape == (16, 3, 24, 24) and images.dtype == torch.float32
    reds = denormalise(images, loader)[:, 0]
    # a resized crop of a solid image is still that one colour: its red value names the image
    assert (reds.amax(dim=(1, 2)) - reds.amin(dim=(1, 2)) < 0.5).all()
    numbers = reds.mean(dim=(1, 2)).round().long()
    assert len(set(numbers.tolist())) == 16
    assert (labels == numbers // 6).all()  # 6 images per class, in class order


def test_folder_test_loader_resizes_and_centre_crops(folder):
    loader = build_loader(
        folder, "test", batch_size=4, train=False, kind="torch", image_size=32, num_workers=0
    )
    images, labels = collect(loader)
    assert images.shape == (6, 3, 32, 32) and labels.tolist() == [0, 0, 1, 1, 2, 2]
    numbers = denormalise(images, loader)[:, 0].mean(dim=(1, 2)).round().long()
    assert numbers.tolist() == list(range(18, 24))


def test_loader_from_a_dataset_name(cifar100):
    loader = build_loader(
        "cifar100",
        "test",
        data_root=cifar100.root.parent,
        batch_size=10,
        train=False,
        kind="memory",
    )
    assert loader.num_classes == 100 and len(loader) == 3


def test_bad_loader_requests(cifar100, folder):
    with pytest.raises(DataError, match="memory loader needs an array dataset"):
        build_loader(folder, "train", batch_size=2, train=True, kind="memory")
    with pytest.raises(DataError, match="unknown loader kind 'tpu'"):
        build_loader(cifar100, "train", batch_size=2, train=True, kind="tpu")
    with pytest.raises(DataError, match="less than one batch of 128"):
        build_loader(cifar100, "train", batch_size=128, train=True, kind="memory")
    with pytest.raises(DataError, match="subset 500 is larger than the 100 images"):
        build_loader(cifar100, "train", batch_size=10, train=True, kind="memory", subset=500)
    with pytest.raises(DataError, match="no split 'val'"):
        build_loader(cifar100, "val", batch_size=10, train=False, kind="memory")


@pytest.mark.gpu
@pytest.mark.parametrize("kind", ["memory", "torch"])
def test_batches_arrive_on_the_gpu(cifar100, kind):
    def load(split, device, train):
        return build_loader(
            cifar100, split, batch_size=10, train=train, kind=kind, device=device, num_workers=0
        )

    images, labels = collect(load("test", "cuda", False))
    assert images.device.type == labels.device.type == "cuda"
    torch.testing.assert_close(images.cpu(), collect(load("test", "cpu", False))[0])
    first, again = collect(load("train", "cuda", True)), collect(load("train", "cuda", True))
    torch.testing.assert_close(first[0], again[0], rtol=0, atol=0)
    assert sorted(first[1].tolist()) == list(range(100))
