"""The Loader base class: what every loader kind shares (the epoch plan, the dataset's facts, the
normalisation on the device). The kinds are memory.py, torch_loader.py and dali.py; build_loader
(loaders.py) picks one."""

from __future__ import annotations

import math

import numpy as np
import torch

from adautomix.data.augment import Recipe
from adautomix.data.epoch_plan import epoch_indices
from adautomix.data.errors import DataError
from adautomix.data.prepare import Manifest
from adautomix.data.split import check_subset


class Loader:
    """What every kind shares: the epoch plan, the dataset's facts and the normalisation."""

    kind = ""

    def __init__(
        self,
        manifest: Manifest,
        split: str,
        *,
        batch_size: int,
        train: bool,
        device: torch.device,
        seed: int,
        subset: int,
        recipe: Recipe,
        rank: int,
        world_size: int,
        pool: np.ndarray | None = None,
    ):
        if split not in manifest.counts:
            raise DataError(
                f"{manifest.name} has no split {split!r}; valid: {', '.join(manifest.counts)}"
            )
        if not 0 <= rank < world_size:
            raise DataError(f"rank {rank} is outside [0, world_size={world_size})")
        count = manifest.counts[split]
        if (
            pool is not None
            and len(pool)
            and not 0 <= int(np.min(pool)) <= int(np.max(pool)) < count
        ):
            raise DataError(
                f"a pool of indices outside the {count} images of {manifest.name}/{split}"
            )
        available = count if pool is None else len(pool)
        check_subset(subset, available, f"{manifest.name}/{split}", held_out=pool is not None)
        self.manifest, self.split, self.train = manifest, split, train
        self.batch_size, self.device, self.seed = batch_size, device, seed
        self.rank, self.world_size, self.subset = rank, world_size, subset
        self.pool = pool
        self.epoch = 0
        self.num_classes = manifest.num_classes
        self.in_chans = manifest.channels
        self.mean, self.std = recipe.mean or manifest.mean, recipe.std or manifest.std
        self.recipe = recipe
        self.image_size = recipe.image_size
        self.samples = len(self.indices())
        if len(self) == 0:
            raise DataError(
                f"{manifest.name}/{split} gives rank {rank} of {world_size} "
                f"{self.samples} images, less than one batch of {batch_size}; "
                "lower the batch size or the subset"
            )
        shape = (1, self.in_chans, 1, 1)
        self._shift = torch.tensor(self.mean, device=device).view(shape) * 255
        self._scale = torch.tensor(self.std, device=device).view(shape) * 255

    def set_epoch(self, epoch: int) -> None:
        """Pick the epoch whose shuffle and augmentation the next iteration reproduces."""
        self.epoch = epoch

    def indices(self) -> np.ndarray:
        return epoch_indices(
            self.manifest.counts[self.split],
            train=self.train,
            batch_size=self.batch_size,
            seed=self.seed,
            epoch=self.epoch,
            subset=self.subset,
            rank=self.rank,
            world_size=self.world_size,
            pool=self.pool,
        )

    def __len__(self) -> int:
        return math.ceil(self.samples / self.batch_size)

    def _normalise(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 N×C×H×W -> float32, (x/255 - mean) / std."""
        return (images.float() - self._shift) / self._scale
