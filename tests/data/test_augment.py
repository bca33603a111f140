"""The augmentation recipes (data/augment.py) in every loader kind that supports them.

The datasets are written straight into the prepared format with mean 0 and std 1, so that a
loader's output times 255 is the pixel values. Ramp images (red = k·column, green = k·row) show the
crop a loader took: over the middle of an output image, the red slope per output pixel is k·w/S
for a crop w source pixels wide resized to S, negative when flipped; the green slope gives the
height. Noise images show resampling: how sharp an output is (total variation) tells whether it
was upscaled from fewer pixels.
"""

from __future__ import annotations

import dataclasses
import logging
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms import v2

from adautomix.config import ConfigError, RunConfig
from adautomix.data import DataError, Recipe, build_loader, crops, dali, loaders
from adautomix.data.prepare import FORMAT_VERSION, Manifest
from adautomix.presets import PRESETS

# Skipped only without the dali extra; an installed DALI that fails to import fails these tests.
needs_dali = pytest.mark.skipif(not dali.installed(), reason="needs NVIDIA DALI (the dali extra)")
DALI = pytest.param("dali", marks=needs_dali)
ARRAY_KINDS = ["torch", "memory", DALI]
FOLDER_KINDS = ["torch", DALI]
RAMP_STEP = 8  # grey levels per source pixel of the array ramps (32 px: 0..248)
FOLDER_STEP = 4  # of the folder ramps (48×40 px: 0..188)


def _manifest(root, format, count, image_size):
    return Manifest(
        name=root.name,
        format=format,
        classes=[f"c{i}" for i in range(count)],
        num_classes=count,
        counts={"train": count, "test": count},
        image_size=image_size,
        channels=3,
        mean=(0.0,) * 3,
        std=(1.0,) * 3,
        sha256="",
        format_version=FORMAT_VERSION,
        source="synthetic",
        root=root,
    )


def _ramps(count, height, width, step):
    images = np.zeros((count, height, width, 3), np.uint8)
    images[..., 0] = np.arange(width) * step
    images[..., 1] = (np.arange(height) * step)[:, None]
    images[..., 2] = (np.arange(count) * 10)[:, None, None]  # which image
    return images


def _arrays(root, images):
    root.mkdir()
    for split in ("train", "test"):
        np.save(root / f"{split}_images.npy", images)
        np.save(root / f"{split}_labels.npy", np.arange(len(images), dtype=np.int64))
    return _manifest(root, "array", len(images), images.shape[1:3])


@pytest.fixture(scope="module")
def ramps(tmp_path_factory):
    return _arrays(tmp_path_factory.mktemp("aug") / "ramps", _ramps(16, 32, 32, RAMP_STEP))


@pytest.fixture(scope="module")
def noise(tmp_path_factory):
    images = np.random.default_rng(0).integers(0, 256, (16, 64, 64, 3), np.uint8)
    return _arrays(tmp_path_factory.mktemp("aug") / "noise", images)


@pytest.fixture(scope="module")
def folder_ramps(tmp_path_factory):
    """8 lossless PNG ramps, 48 wide and 40 high, in both splits."""
    root = tmp_path_factory.mktemp("aug") / "folder-ramps"
    images = _ramps(8, 40, 48, FOLDER_STEP)
    for split in ("train", "test"):
        lines = []
        for i, image in enumerate(images):
            path = f"{split}/{i:04d}/{i:06d}.png"
            (root / path).parent.mkdir(parents=True)
            Image.fromarray(image).save(root / path)
            lines.append(f"{path} {i}")
        (root / f"{split}_list.txt").write_text("\n".join(lines) + "\n")
    return _manifest(root, "folder", len(images), None)


def pixels(manifest, recipe, kind, *, train=True, seed=0, epochs=(0,), **options):
    """Every image of the given epochs as float pixel values, and their labels."""
    loader = build_loader(
        manifest,
        "train",
        batch_size=8,
        train=train,
        kind=kind,
        seed=seed,
        recipe=recipe,
        num_workers=0 if kind == "torch" else 1,
        **options,
    )
    images, labels = [], []
    for epoch in epochs:
        loader.set_epoch(epoch)
        for x, y in loader:
            images.append(x * 255)
            labels.append(y)
    return torch.cat(images), torch.cat(labels)


def crop_sizes(images, step):
    """(width, height) in source pixels of the crop each ramp image shows; width < 0: flipped."""
    size = images.shape[-1]
    a, b = size // 4, 3 * size // 4  # clear of the border, where resampling clamps
    red, green = images[:, 0].mean(1), images[:, 1].mean(2)
    width = (red[:, b] - red[:, a]) / (b - a) * size / step
    height = (green[:, b] - green[:, a]) / (b - a) * size / step
    return width, height


def total_variation(images):
    return (images[..., 1:] - images[..., :-1]).abs().mean().item()


def rrc(manifest, size, **fields):
    return Recipe.resolve(manifest, image_size=size, train_crop="rrc", **fields)


# --- the recipes, from a config and a manifest -------------------------------------------------


def test_auto_and_defaults_resolve_by_storage_format(ramps, folder_ramps):
    assert Recipe.resolve(ramps) == Recipe(image_size=32, train_crop="pad", test_resize=0)
    # auto stays "pad" for an upscaled array dataset: image_size alone never changes the crop
    assert Recipe.resolve(ramps, image_size=64).train_crop == "pad"
    assert Recipe.resolve(folder_ramps) == Recipe(image_size=224, train_crop="rrc", test_resize=256)
    assert Recipe.resolve(folder_ramps, image_size=112).test_resize == 128
    with pytest.raises(DataError, match="train_crop 'pad' needs an array dataset"):
        Recipe.resolve(folder_ramps, train_crop="pad")
    with pytest.raises(DataError, match="train_crop 'flip' needs an array dataset"):
        Recipe.resolve(folder_ramps, train_crop="flip")
    with pytest.raises(DataError, match="contradicts the recipe"):
        build_loader(
            ramps,
            "train",
            batch_size=8,
            train=True,
            kind="memory",
            image_size=48,
            recipe=rrc(ramps, 64),
        )


@pytest.mark.parametrize(
    "preset,manifest,expected",
    [
        ("cifar100-r18-adautomix", "ramps", Recipe(32, "pad")),
        ("cifar100-convnext-adautomix", "ramps", Recipe(32, "pad")),
        ("tiny-imagenet-r18-adautomix", "tiny", Recipe(64, "rrc", interpolation="bicubic")),
        (
            "imagenet-r50-adautomix",
            "folder_ramps",
            Recipe(224, "rrc", interpolation="bicubic", test_resize=256),
        ),
        (
            "cub200-r18-adautomix",
            "folder_ramps",
            Recipe(224, "rrc", (0.5, 1.0), resize_before_crop=256, test_resize=256),
        ),
        (
            "cars-rx50-adautomix",
            "folder_ramps",
            Recipe(224, "rrc", (0.5, 1.0), resize_before_crop=256, test_resize=256),
        ),
        (
            "cifar100-swin-adautomix",
            "ramps",
            Recipe(224, "rrc", interpolation="bicubic", randaugment=True),
        ),
        ("fashion-mnist-quickstart", "ramps", Recipe(32, "flip")),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_presets_resolve_to_their_recipes(request, noise, preset, manifest, expected):
    manifest = noise if manifest == "tiny" else request.getfixturevalue(manifest)  # 64 px
    config = PRESETS[preset]
    expected = dataclasses.replace(expected, mean=config.normalize_mean, std=config.normalize_std)
    assert Recipe.from_config(config, manifest) == expected


@pytest.mark.parametrize(
    "changes,fragment",
    [
        ({"train_crop": "random"}, "unknown train_crop 'random'; valid: auto, pad, flip, rrc"),
        ({"interpolation": "nearest"}, "unknown interpolation 'nearest'; valid: bilinear, bicubic"),
        ({"crop_scale": [0.5]}, re.escape("crop_scale must be [low, high]")),
        ({"crop_scale": [0.0, 1.0]}, re.escape("must be [low, high] with 0 < low <= high <= 1")),
        ({"crop_scale": [0.9, 0.5]}, "crop_scale must be"),
        ({"crop_scale": [0.5, 1.5]}, "crop_scale must be"),
        ({"crop_scale": "0.5,1"}, "crop_scale must be"),
        ({"image_size": -1}, "image_size must be >= 0"),
        ({"resize_before_crop": -1}, "resize_before_crop must be >= 0"),
        (
            {"image_size": 224, "resize_before_crop": 200},
            r"resize_before_crop \(200\) must be 0 or",
        ),
        ({"train_crop": "pad", "crop_scale": [0.5, 1.0]}, "rrc crop only"),
        ({"train_crop": "pad", "resize_before_crop": 40}, "rrc crop only"),
        ({"train_crop": "flip", "crop_scale": [0.5, 1.0]}, "rrc crop only"),
    ],
)
def test_bad_augmentation_fields_fail_on_construction(changes, fragment):
    with pytest.raises(ConfigError, match=fragment):
        RunConfig(**changes)


def test_augmentation_fields_round_trip_through_json(tmp_path):
    config = RunConfig(
        dataset="cub200",
        image_size=224,
        train_crop="rrc",
        crop_scale=(0.5, 1),
        interpolation="bicubic",
        resize_before_crop=256,
        randaugment=True,
    )
    assert config.crop_scale == [0.5, 1.0]  # a list of floats, as JSON gives it back
    config.save(tmp_path / "config.json")
    assert RunConfig.load(tmp_path / "config.json") == config
    assert RunConfig.from_dict(config.to_dict()) == config


# --- what every kind yields ---------------------------------------------------------------------

ARRAY_RECIPES = {
    "tiny-imagenet": dict(image_size=64, train_crop="rrc", interpolation="bicubic"),
    "vit-upscaled": dict(image_size=96, train_crop="rrc", interpolation="bicubic"),
    "pad-resized": dict(image_size=80, train_crop="pad", interpolation="bicubic"),
    "resize-first": dict(
        image_size=48, train_crop="rrc", crop_scale=(0.5, 1.0), resize_before_crop=72
    ),
}


@pytest.mark.parametrize("train", [True, False], ids=["train", "test"])
@pytest.mark.parametrize("name", ARRAY_RECIPES)
@pytest.mark.parametrize("kind", ARRAY_KINDS)
def test_array_recipes_give_float_images_of_image_size_within_the_pixel_range(
    noise, kind, name, train
):
    recipe = Recipe.resolve(noise, **ARRAY_RECIPES[name])
    images, labels = pixels(noise, recipe, kind, train=train)
    size = recipe.image_size
    assert images.shape == (16, 3, size, size) and images.dtype == torch.float32
    assert sorted(labels.tolist()) == list(range(16))
    # Noise makes bicubic overshoot: every kind keeps the values inside the uint8 range.
    assert images.min() >= -1e-3 and images.max() <= 255 + 1e-3
    assert images.std() > 30  # not blank


@pytest.mark.parametrize("train", [True, False], ids=["train", "test"])
@pytest.mark.parametrize(
    "fields",
    [
        dict(image_size=40, interpolation="bicubic"),  # ImageNet-style
        dict(image_size=24, crop_scale=(0.5, 1.0), resize_before_crop=32),  # fine-grained-style
    ],
    ids=["imagenet", "fine-grained"],
)
@pytest.mark.parametrize("kind", FOLDER_KINDS)
def test_folder_recipes_give_float_images_of_image_size(folder_ramps, kind, fields, train):
    recipe = Recipe.resolve(folder_ramps, **fields)
    images, _ = pixels(folder_ramps, recipe, kind, train=train)
    size = recipe.image_size
    assert images.shape == (8, 3, size, size) and images.dtype == torch.float32
    assert images.min() >= -1e-3 and images.max() <= 255 + 1e-3


# --- flip only ----------------------------------------------------------------------------------


def as_they_are_or_mirrored(manifest, images, labels):
    """Per yielded image: whether it is its source image exactly, and whether its mirror."""
    source = torch.from_numpy(np.load(manifest.root / "train_images.npy")).permute(0, 3, 1, 2)
    source = source[labels].float()
    return (
        (images - source).abs().amax((1, 2, 3)) < 1e-3,
        (images - source.flip(-1)).abs().amax((1, 2, 3)) < 1e-3,
    )


@pytest.mark.parametrize("kind", ARRAY_KINDS)
def test_flip_yields_each_whole_image_mirrored_about_half_the_time(ramps, kind):
    flip = Recipe.resolve(ramps, train_crop="flip")
    as_is, mirrored = as_they_are_or_mirrored(ramps, *pixels(ramps, flip, kind, epochs=range(4)))
    assert (as_is | mirrored).all()  # never shifted, cropped or resampled
    assert 0.3 < mirrored.float().mean() < 0.7
    # the pad crop of the same images shifts most of them, so the check above can tell
    pad = Recipe.resolve(ramps, train_crop="pad")
    as_is, mirrored = as_they_are_or_mirrored(ramps, *pixels(ramps, pad, kind, epochs=range(4)))
    assert (~as_is & ~mirrored).float().mean() > 0.5


# --- RandomResizedCrop --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ARRAY_KINDS)
def test_rrc_crops_inside_the_image_with_an_area_in_crop_scale_and_flips(ramps, kind):
    images, _ = pixels(ramps, rrc(ramps, 64, crop_scale=(0.5, 1.0)), kind, epochs=range(4))
    width, height = crop_sizes(images, RAMP_STEP)
    area = width.abs() * height / 32**2
    # a crop's sides are whole pixels, rounded: at 32 px that can cost 3 % of the area
    assert area.min() > 0.47 and area.max() < 1.02
    assert (height > 0).all()  # never flipped upside down
    assert 0.3 < (width < 0).float().mean() < 0.7  # flipped left-right about half the time
    # inside the image: the ramps' values never leave those of the source
    assert images[:, :2].min() >= -1e-3 and images[:, :2].max() <= 31 * RAMP_STEP + 1e-3
    default, _ = pixels(ramps, rrc(ramps, 64), kind, epochs=range(4))
    width, height = crop_sizes(default, RAMP_STEP)
    assert (width.abs() * height / 32**2).min() < 0.3  # the bound above is the recipe's


@pytest.mark.parametrize("resize_before_crop", [0, 32], ids=["decoded", "resized-first"])
@pytest.mark.parametrize("kind", FOLDER_KINDS)
def test_folder_rrc_keeps_crop_scale(folder_ramps, kind, resize_before_crop):
    size = 64 if not resize_before_crop else 24
    recipe = Recipe.resolve(
        folder_ramps, image_size=size, crop_scale=(0.5, 1.0), resize_before_crop=resize_before_crop
    )
    images, _ = pixels(folder_ramps, recipe, kind, epochs=range(4))
    width, height = crop_sizes(images, FOLDER_STEP)  # in source pixels, whatever the resize
    area = width.abs() * height / (48 * 40)
    assert area.min() > 0.47 and area.max() < 1.02
    assert (height > 0).all() and (width < 0).any() and (width > 0).any()


@pytest.mark.parametrize("kind", ARRAY_KINDS)
def test_bicubic_is_sharper_than_bilinear_on_the_same_crops(noise, kind):
    bilinear, _ = pixels(noise, rrc(noise, 96, crop_scale=(0.5, 1.0)), kind)
    bicubic, _ = pixels(noise, rrc(noise, 96, crop_scale=(0.5, 1.0), interpolation="bicubic"), kind)
    other_crops, _ = pixels(noise, rrc(noise, 96, crop_scale=(0.5, 1.0)), kind, seed=1)
    assert not torch.equal(bilinear, bicubic)
    # the same crops (the interpolation draws nothing), resampled differently
    difference = (bilinear - bicubic).abs().mean()
    assert difference < 0.4 * (bilinear - other_crops).abs().mean()
    assert total_variation(bicubic) > 1.15 * total_variation(bilinear)


@pytest.mark.parametrize("kind", ARRAY_KINDS)
def test_resize_before_crop_resizes_first(noise, kind):
    # A quarter of the image resized to 32 first leaves a 16-px crop to upscale to 32: blurred.
    # Cut from the 64-px image, the same crop is 32 px and stays noise.
    resized = rrc(noise, 32, crop_scale=(0.25, 0.25), resize_before_crop=32)
    direct = rrc(noise, 32, crop_scale=(0.25, 0.25))
    assert total_variation(pixels(noise, resized, kind)[0]) < 0.5 * total_variation(
        pixels(noise, direct, kind)[0]
    )


@pytest.mark.parametrize("kind", ARRAY_KINDS)
def test_resize_before_crop_sets_the_test_centre_crop(ramps, kind):
    # Test: Resize(48) then CenterCrop(32), so the output spans 32/48 of the source.
    images, labels = pixels(ramps, rrc(ramps, 32, resize_before_crop=48), kind, train=False)
    width, height = crop_sizes(images, RAMP_STEP)
    torch.testing.assert_close(width, torch.full_like(width, 32 * 32 / 48), atol=0.1, rtol=0)
    torch.testing.assert_close(height, torch.full_like(height, 32 * 32 / 48), atol=0.1, rtol=0)
    assert labels.tolist() == list(range(16))
    centre = images[:, 0, 16, 15:17].mean(-1)  # the middle of the image stays in the middle
    assert ((centre - 15.5 * RAMP_STEP).abs() < 1).all()


def test_memory_rrc_of_the_whole_image_is_torchvisions_resize_or_its_mirror(noise):
    recipe = rrc(noise, 96, crop_scale=(1.0, 1.0))  # the crop is the whole image
    images, labels = pixels(noise, recipe, "memory")
    source = torch.from_numpy(np.load(noise.root / "train_images.npy")).permute(0, 3, 1, 2)
    resized = F.interpolate(source[labels].float(), size=96, mode="bilinear", align_corners=False)

    def error(a, b):
        return (a - b).abs().amax(dim=(1, 2, 3))

    mirrored = error(images, resized.flip(-1)) < 1e-2
    assert (mirrored | (error(images, resized) < 1e-2)).all()
    assert 0 < mirrored.sum() < 16
    # The torch kind's RandomResizedCrop: the same images, resampled in uint8 fixed point.
    by_label = images[labels.argsort()]
    reference, reference_labels = pixels(noise, recipe, "torch")
    reference = reference[reference_labels.argsort()]
    closest = torch.minimum(error(by_label, reference), error(by_label.flip(-1), reference))
    assert (closest <= 1 + 1e-2).all()


@pytest.mark.parametrize("height,width", [(32, 32), (20, 60)], ids=["square", "wide"])
def test_memory_crop_boxes_follow_torchvisions_get_params(height, width):
    generator = torch.Generator().manual_seed(0)
    top, left, crop_h, crop_w = crops.crop_boxes(4000, height, width, (0.08, 1.0), generator)
    assert (top >= 0).all() and (left >= 0).all() and (crop_h >= 1).all() and (crop_w >= 1).all()
    assert (top + crop_h <= height).all() and (left + crop_w <= width).all()
    assert (top == top.round()).all() and (crop_w == crop_w.round()).all()
    torch.manual_seed(0)
    image = torch.empty(1, height, width)
    expected = torch.tensor(
        [v2.RandomResizedCrop.get_params(image, [0.08, 1.0], [3 / 4, 4 / 3]) for _ in range(4000)],
        dtype=torch.float32,
    )
    for ours, theirs in (
        (crop_h * crop_w, expected[:, 2] * expected[:, 3]),
        (crop_w / crop_h, expected[:, 3] / expected[:, 2]),
    ):
        assert abs(ours.mean() - theirs.mean()) < 0.03 * theirs.mean()
        assert abs(ours.std() - theirs.std()) < 0.06 * theirs.std()


@pytest.mark.parametrize("kind", ARRAY_KINDS)
def test_rrc_epochs_are_a_function_of_seed_epoch_and_rank(ramps, kind):
    recipe = rrc(ramps, 48, interpolation="bicubic")

    def epoch(seed=0, number=1, rank=0):
        return pixels(ramps, recipe, kind, seed=seed, epochs=(number,), rank=rank, world_size=2)[0]

    first = epoch()
    assert torch.equal(first, epoch())
    assert not torch.equal(first, epoch(number=2))
    assert not torch.equal(first, epoch(seed=1))
    assert not torch.equal(first, epoch(rank=1))


# --- RandAugment --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["torch", DALI])
def test_randaugment_changes_images_and_is_seeded(noise, kind):
    plain = rrc(noise, 64, crop_scale=(1.0, 1.0))
    augmented = rrc(noise, 64, crop_scale=(1.0, 1.0), randaugment=True)
    loader_images, labels = pixels(noise, augmented, kind, epochs=(0, 0, 1))
    first, again, next_epoch = loader_images.split(16)
    baseline, baseline_labels = pixels(noise, plain, kind)
    assert torch.equal(labels[:16], baseline_labels)
    assert torch.equal(first, again)
    assert not torch.equal(first, next_epoch)
    changed = (first - baseline).abs().amax(dim=(1, 2, 3)) > 0
    changed |= (first - baseline.flip(-1)).abs().amax(dim=(1, 2, 3)) > 0
    assert changed.sum() >= 12  # both ops can be the identity, and some ops keep noise as is
    # test images are never augmented
    test_images, _ = pixels(noise, augmented, kind, train=False)
    assert torch.equal(test_images, pixels(noise, plain, kind, train=False)[0])


def test_memory_loader_refuses_randaugment_and_auto_picks_another(noise, caplog, monkeypatch):
    recipe = rrc(noise, 64, randaugment=True)
    with pytest.raises(DataError, match="memory loader has no RandAugment.*--loader torch"):
        build_loader(noise, "train", batch_size=8, train=True, kind="memory", recipe=recipe)
    # Where auto would pick memory (array datasets), it picks DALI, else torch, and says why.
    monkeypatch.setattr(loaders, "_auto_kind", lambda manifest: "memory")
    expected = "dali" if dali.available() else "torch"
    with caplog.at_level(logging.INFO, logger="adautomix.data"):
        loader = build_loader(
            noise, "train", batch_size=8, train=True, kind="auto", recipe=recipe, num_workers=0
        )
    assert loader.kind == expected
    assert f"loader auto: {expected}" in caplog.text and "no RandAugment" in caplog.text
    monkeypatch.setattr(dali, "available", lambda: False)
    assert (
        build_loader(
            noise, "train", batch_size=8, train=True, kind="auto", recipe=recipe, num_workers=0
        ).kind
        == "torch"
    )
    # test splits have no RandAugment, so memory still serves them
    assert (
        build_loader(noise, "test", batch_size=8, train=False, kind="auto", recipe=recipe).kind
        == "memory"
    )


def test_without_a_recipe_a_loader_takes_the_datasets_default_at_image_size(ramps):
    assert build_loader(ramps, "train", batch_size=8, train=True, kind="memory").recipe == Recipe(
        32, "pad"
    )
    assert build_loader(
        ramps, "train", batch_size=8, train=True, kind="memory", image_size=48
    ).recipe == Recipe(48, "pad")


@pytest.mark.gpu
@pytest.mark.parametrize(
    "kind,fields",
    [
        (
            "memory",
            dict(image_size=96, train_crop="rrc", interpolation="bicubic", resize_before_crop=96),
        ),
        pytest.param(
            "dali",
            dict(image_size=96, train_crop="rrc", interpolation="bicubic", randaugment=True),
            marks=needs_dali,
        ),
    ],
    ids=["memory", "dali"],
)
def test_recipes_run_on_the_gpu(noise, folder_ramps, kind, fields):
    manifests = [noise] + ([folder_ramps] if kind == "dali" else [])
    for manifest in manifests:
        recipe = Recipe.resolve(manifest, **fields)
        for train in (True, False):
            images, labels = pixels(manifest, recipe, kind, train=train, device="cuda")
            assert images.is_cuda and labels.is_cuda and images.shape[-2:] == (96, 96)
            assert images.min() >= -1e-3 and images.max() <= 255 + 1e-3
        again, _ = pixels(manifest, recipe, kind, device="cuda")
        assert torch.equal(pixels(manifest, recipe, kind, device="cuda")[0], again)


# --- normalisation constants -------------------------------------------------------------------
@pytest.mark.parametrize("kind", ARRAY_KINDS)
def test_recipe_normalisation_replaces_the_datasets_statistics(ramps, kind):
    mean, std = (0.5, 0.25, 0.1), (0.2, 0.4, 0.5)
    recipe = Recipe.resolve(ramps, mean=mean, std=std)
    images, _ = pixels(ramps, recipe, kind, train=False)
    raw, _ = pixels(ramps, Recipe.resolve(ramps), kind, train=False)  # manifest: mean 0, std 1
    shift = torch.tensor(mean).view(1, 3, 1, 1) * 255
    scale = torch.tensor(std).view(1, 3, 1, 1)
    torch.testing.assert_close(images, (raw - shift) / scale, atol=1e-3, rtol=1e-4)


def test_normalisation_must_fit_the_channels(ramps):
    with pytest.raises(DataError, match="3 channel"):
        Recipe.resolve(ramps, mean=[0.5], std=[0.2])
    with pytest.raises(ConfigError, match="normalize_mean"):
        RunConfig(normalize_mean=[0.5, 0.5], normalize_std=[0.2])
    with pytest.raises(ConfigError, match="std > 0"):
        RunConfig(normalize_mean=[0.5], normalize_std=[0.0])


def test_presets_normalise_with_the_official_constants():
    assert PRESETS["cifar100-r18-adautomix"].normalize_mean == [0.4914, 0.4822, 0.4465]
    assert PRESETS["cifar100-r18-adautomix"].normalize_std == [0.2023, 0.1994, 0.201]
    for name in ("tiny-imagenet-r18-adautomix", "imagenet-r50-adautomix", "cub200-r18-adautomix"):
        assert PRESETS[name].normalize_mean == [0.485, 0.456, 0.406]
        assert PRESETS[name].normalize_std == [0.229, 0.224, 0.225]
