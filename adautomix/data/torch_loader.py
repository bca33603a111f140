"""The "torch" loader: a DataLoader with per-sample torchvision.transforms.v2, for folder datasets
(and arrays when wanted). Batches cross to the device as uint8 and are normalised there. Every
sample gets its own augmentation seed along with its index, so neither the worker count nor
persistent workers nor resuming mid-run changes what an epoch looks like."""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

import numpy as np
from torch.utils.data import DataLoader, Sampler

from adautomix.data.augment import (
    CROP_RATIO,
    RANDAUGMENT_BINS,
    RANDAUGMENT_MAGNITUDE,
    RANDAUGMENT_OPS,
    Recipe,
)
from adautomix.data.base import Loader
from adautomix.data.datasets import ArrayDataset, FolderDataset
from adautomix.data.epoch_plan import derived_seed
from adautomix.data.prepare import Manifest

if TYPE_CHECKING:
    from torchvision.transforms import v2


class TorchLoader(Loader):
    kind = "torch"

    def __init__(self, manifest: Manifest, split: str, *, num_workers: int, **options):
        super().__init__(manifest, split, **options)
        transform = _transform(manifest, self.recipe, self.train)
        dataset = (
            ArrayDataset(manifest, split, transform)
            if manifest.format == "array"
            else FolderDataset(manifest, split, transform)
        )
        self.loader = DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=_PlanSampler(self),
            num_workers=num_workers,
            persistent_workers=num_workers > 0,
            pin_memory=self.device.type == "cuda",
        )

    def __iter__(self):
        for images, labels in self.loader:
            images = images.to(self.device, non_blocking=True)
            yield self._normalise(images), labels.to(self.device, non_blocking=True)


class _PlanSampler(Sampler):
    """Yields (index, augmentation seed) pairs of the loader's current epoch. It runs in the main
    process, so set_epoch reaches it even with persistent workers.

    It holds only a weak reference: a loader -> DataLoader -> sampler -> loader cycle would leave
    the workers to the garbage collector, which can finalise their queues first and then wait
    out each worker's 5 s shutdown timeout."""

    def __init__(self, loader: Loader):
        self.loader = weakref.proxy(loader)

    def __iter__(self):
        loader = self.loader
        indices = loader.indices()
        # the seeds of the whole epoch's global order; this rank's samples sit at every
        # world_size-th place of it in training (a contiguous chunk in testing, where no
        # augmentation reads them)
        seeds = np.random.default_rng(derived_seed(loader.seed, loader.epoch, 0))
        world, rank = loader.world_size, loader.rank
        per_sample = seeds.integers(0, 2**62, len(indices) * world)[rank::world]
        return iter(zip(indices.tolist(), per_sample.tolist(), strict=True))

    def __len__(self) -> int:
        return self.loader.samples


def _transform(manifest: Manifest, recipe: Recipe, train: bool) -> v2.Transform:
    """Per-sample transforms on uint8 C×H×W tensors (normalisation happens on the device)."""
    # torchvision is imported here, not at the top: importing it loads torch._dynamo (seconds),
    # which the memory and DALI kinds never need.
    from torchvision.transforms import InterpolationMode, v2

    size = recipe.image_size
    mode = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC}[
        recipe.interpolation
    ]
    steps = []
    if train and recipe.train_crop == "rrc":
        if recipe.resize_before_crop:
            steps.append(v2.Resize(recipe.resize_before_crop, mode, antialias=True))
        steps += [
            v2.RandomResizedCrop(size, recipe.crop_scale, CROP_RATIO, mode, antialias=True),
            v2.RandomHorizontalFlip(),
        ]
    else:
        native = manifest.image_size
        if train and recipe.train_crop == "pad":
            steps.append(v2.RandomCrop(native, padding=native[0] // 8, padding_mode="reflect"))
        if train:
            steps.append(v2.RandomHorizontalFlip())
        if not train and recipe.test_resize:
            steps += [v2.Resize(recipe.test_resize, mode, antialias=True), v2.CenterCrop(size)]
        elif manifest.format == "array" and native[0] != size:
            steps.append(v2.Resize(size, mode, antialias=True))
    if train and recipe.randaugment:
        # Bilinear for its rotations and shears, as DALI's RandAugment (which has no bicubic).
        steps.append(
            v2.RandAugment(
                RANDAUGMENT_OPS, RANDAUGMENT_MAGNITUDE, RANDAUGMENT_BINS, InterpolationMode.BILINEAR
            )
        )
    return v2.Compose(steps) if steps else v2.Identity()
