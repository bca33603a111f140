"""Recipe: how a loader augments a dataset's train images and prepares its test images.

One frozen value, resolved once from a RunConfig's data fields and the dataset's manifest, that
every loader kind (torch, memory, dali) reads; no kind decides a recipe on its own.

Train, in this order:
- "pad" (array datasets): a random crop at the native size with native/8 pixels of reflect
  padding (4 at 32 px) and a horizontal flip, then a resize to image_size if that differs.
- "flip" (array datasets): the whole image at its native size, mirrored half the time, then the
  same resize. The least augmentation of the three, for runs of an epoch or two: a short run fits
  the images it sees faster without a crop's shifts (Fashion-MNIST, AdAutoMix, one epoch of 55,000
  images: 87.8 % test top-1 against 84.1 % with "pad"; docs/benchmarks.md "Quickstart").
- "rrc": [resize the shorter side to resize_before_crop], RandomResizedCrop(image_size) with
  area fraction in crop_scale and aspect ratio in [3/4, 4/3] (torchvision's defaults), and a
  horizontal flip.
- then, when randaugment, RandAugment with 2 ops at magnitude 9 (of 31 bins) on the
  image_size image.
Test: with test_resize, Resize(shorter side = test_resize) and CenterCrop(image_size); without
(array datasets), the image resized to image_size, which at the native size is the image as it is.
test_resize is resize_before_crop where that is set, so train and test see one scale; else
image_size·256/224 for folders (the ImageNet convention) and 0 for arrays. Every resize uses the
recipe's interpolation, antialiased; RandAugment's rotations and shears are bilinear.

Normalisation, last in every kind: (x/255 - mean) / std with the recipe's mean and std, or the
dataset's own train statistics (its manifest) when the recipe has none.

"auto" resolves by the storage format alone: "pad" for arrays, "rrc" for folders. Changing
image_size therefore never changes the crop silently: an upscaled array dataset keeps the pad
crop at its native size (then resized) unless the recipe names "rrc", as the official ViT recipe
on CIFAR does.

Where the kinds differ: each draws its own random numbers (the same distributions); the memory
loader has no RandAugment and does not antialias a crop larger than its output (its arrays are
at most 64 px, so the official recipes only upscale there).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from adautomix.config import CROP_SCALE, INTERPOLATIONS
from adautomix.config import TRAIN_CROPS as CONFIG_TRAIN_CROPS
from adautomix.data.errors import DataError
from adautomix.data.prepare import Manifest

TRAIN_CROPS = tuple(crop for crop in CONFIG_TRAIN_CROPS if crop != "auto")  # resolved ones
CROP_RATIO = (3 / 4, 4 / 3)  # torchvision's RandomResizedCrop default aspect ratios
# torchvision's RandAugment defaults, which the official ViT recipe's "m9, n2" equals.
RANDAUGMENT_OPS = 2
RANDAUGMENT_MAGNITUDE = 9
RANDAUGMENT_BINS = 31
FOLDER_SIZE = 224


@dataclass(frozen=True)
class Recipe:
    image_size: int  # side of the square images a loader yields
    train_crop: str = "pad"  # "pad", "flip" or "rrc" (resolved, never "auto")
    crop_scale: tuple[float, float] = CROP_SCALE
    interpolation: str = "bilinear"
    resize_before_crop: int = 0  # shorter side before the rrc crop; 0: none
    randaugment: bool = False
    test_resize: int = 0  # shorter side before the test centre crop
    mean: tuple[float, ...] = ()  # normalisation in [0, 1]; (): the manifest's
    std: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.train_crop not in TRAIN_CROPS:
            raise DataError(
                f"unknown train_crop {self.train_crop!r}; valid: {', '.join(TRAIN_CROPS)}"
            )
        if self.interpolation not in INTERPOLATIONS:
            raise DataError(
                f"unknown interpolation {self.interpolation!r}; valid: {', '.join(INTERPOLATIONS)}"
            )
        # A tuple whatever was passed (a config holds a list), so that recipes compare and hash.
        object.__setattr__(self, "crop_scale", tuple(float(s) for s in self.crop_scale))
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))
        low, high = self.crop_scale
        if not 0 < low <= high <= 1:
            raise DataError(
                f"crop_scale {list(self.crop_scale)} must be [low, high] with 0 < low <= high <= 1"
            )
        if self.image_size <= 0 or self.resize_before_crop < 0 or self.test_resize < 0:
            raise DataError(
                f"recipe sizes must be positive: image_size {self.image_size}, "
                f"resize_before_crop {self.resize_before_crop}, "
                f"test_resize {self.test_resize}"
            )
        if 0 < self.resize_before_crop < self.image_size:
            # The test split centre-crops image_size out of the resized image.
            raise DataError(
                f"resize_before_crop {self.resize_before_crop} is smaller than "
                f"image_size {self.image_size}; use 0 or at least {self.image_size}"
            )
        if self.train_crop != "rrc" and (self.resize_before_crop or self.crop_scale != CROP_SCALE):
            raise DataError(
                "crop_scale and resize_before_crop shape the 'rrc' crop only; "
                "set train_crop rrc or leave them at their defaults"
            )

    @classmethod
    def resolve(
        cls,
        manifest: Manifest,
        *,
        image_size: int = 0,
        train_crop: str = "auto",
        crop_scale: tuple[float, float] | list[float] = CROP_SCALE,
        interpolation: str = "bilinear",
        resize_before_crop: int = 0,
        randaugment: bool = False,
        mean: tuple[float, ...] | list[float] = (),
        std: tuple[float, ...] | list[float] = (),
    ) -> Recipe:
        """The recipe for one dataset: sizes of 0 and "auto" filled in from its manifest."""
        arrays = manifest.format == "array"
        size = image_size or (manifest.image_size[0] if arrays else FOLDER_SIZE)
        if train_crop == "auto":
            train_crop = "pad" if arrays else "rrc"
        if train_crop != "rrc" and not arrays:
            raise DataError(
                f"train_crop {train_crop!r} needs an array dataset; {manifest.name} is "
                "stored as image files of varying sizes: use train_crop rrc"
            )
        if resize_before_crop:
            test_resize = resize_before_crop
        elif arrays:
            test_resize = 0
        else:  # the ImageNet convention: 256 for 224
            test_resize = int(size * 256 / FOLDER_SIZE)
        if mean and (len(mean) != manifest.channels or len(std) != manifest.channels):
            raise DataError(
                f"normalisation mean {list(mean)} / std {list(std)} does not fit the "
                f"{manifest.channels} channel(s) of {manifest.name}; give one value "
                "per channel, or none for the dataset's own statistics"
            )
        return cls(
            image_size=size,
            train_crop=train_crop,
            crop_scale=crop_scale,
            interpolation=interpolation,
            resize_before_crop=resize_before_crop,
            randaugment=randaugment,
            test_resize=test_resize,
            mean=mean,
            std=std,
        )

    @classmethod
    def from_config(cls, config: Any, manifest: Manifest) -> Recipe:
        """The recipe a RunConfig's data fields describe, for this dataset."""
        return cls.resolve(
            manifest,
            image_size=config.image_size,
            train_crop=config.train_crop,
            crop_scale=config.crop_scale,
            interpolation=config.interpolation,
            resize_before_crop=config.resize_before_crop,
            randaugment=config.randaugment,
            mean=config.normalize_mean,
            std=config.normalize_std,
        )
