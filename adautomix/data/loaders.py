"""build_loader: a prepared dataset -> batches of (normalised float32 images, int64 labels) on the
training device.

Three kinds share one epoch plan (epoch_plan.py), one Loader base (base.py) and one set of
recipes (augment.py):
- "memory" (memory.py, array datasets only): the whole array on the device, a batch's crops and
  flips as one gather or one grid_sample (crops.py).
- "torch" (torch_loader.py): a DataLoader with per-sample torchvision.transforms.v2 over the
  datasets of datasets.py, for folder datasets (and arrays when wanted).
- "dali" (dali.py): NVIDIA DALI pipelines, where DALI is installed.

Augmentation follows a Recipe (augment.py: the crop, its scale, the interpolation, a resize
first, RandAugment), by default the dataset's own. Array datasets (≤ 64 px): a random crop with
native/8 pixels of reflect padding (4 at 32 px) and a horizontal flip; test images as they are.
Folder datasets: RandomResizedCrop(image_size, default 224) and a flip; test
Resize(image_size·256/224) and CenterCrop(image_size). Augmentation is a function of
(seed, epoch, rank) alone: the memory loader draws from a generator seeded by them, the torch
loader hands every sample its own seed along with its index, so neither the worker count nor
persistent workers nor resuming mid-run changes what an epoch looks like.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from adautomix.data.augment import Recipe
from adautomix.data.base import Loader
from adautomix.data.errors import DataError
from adautomix.data.prepare import Manifest, ensure_dataset

KINDS = ("auto", "torch", "memory", "dali")
log = logging.getLogger("adautomix.data")


def build_loader(
    manifest_or_name: Manifest | str,
    split: str,
    *,
    data_root: str = "data",
    batch_size: int,
    train: bool,
    kind: str = "auto",
    device: str | torch.device = "cpu",
    seed: int = 0,
    subset: int = 0,
    num_workers: int = 2,
    image_size: int | None = None,
    rank: int = 0,
    world_size: int = 1,
    recipe: Recipe | None = None,
    pool: np.ndarray | None = None,
) -> Loader:
    """A loader over `split` ("train" or "test") of a prepared dataset; `train` turns on
    shuffling, augmentation and dropping the partial last batch. kind "auto" picks the fastest
    kind measured for the dataset's format (see _auto_kind) and logs its choice.

    `recipe` (augment.py) says how images are cropped, resized and augmented; without one, the
    dataset's default recipe at `image_size` (None: the native size, 224 for folders).

    `pool` limits the loader to those indices of the split (the training or the validation part
    of a split, data/split.py); `subset` then picks from the pool."""
    manifest = (
        ensure_dataset(manifest_or_name, data_root)
        if isinstance(manifest_or_name, str)
        else manifest_or_name
    )
    if kind not in KINDS:
        raise DataError(f"unknown loader kind {kind!r}; build_loader makes {', '.join(KINDS)}")
    if recipe is None:
        recipe = Recipe.resolve(manifest, image_size=image_size or 0)
    elif image_size and image_size != recipe.image_size:
        raise DataError(
            f"image_size {image_size} contradicts the recipe's "
            f"{recipe.image_size}; pass the size in the recipe only"
        )
    randaugment = train and recipe.randaugment
    if kind == "auto":
        kind = _auto_kind(manifest)
        if kind == "memory" and randaugment:
            kind = _dali_or_torch()
            log.info(
                "loader auto: %s for %s on %s (the memory loader has no RandAugment)",
                kind,
                manifest.name,
                device,
            )
        else:
            log.info("loader auto: %s for %s on %s", kind, manifest.name, device)
    if kind == "memory" and manifest.format != "array":
        raise DataError(
            f"the memory loader needs an array dataset; {manifest.name} is stored as "
            "image files: use the torch loader"
        )
    options = dict(
        batch_size=batch_size,
        train=train,
        device=torch.device(device),
        seed=seed,
        subset=subset,
        recipe=recipe,
        rank=rank,
        world_size=world_size,
        pool=pool,
    )
    # Each kind is imported when chosen: the torch kind's torchvision and DALI cost seconds.
    if kind == "memory":
        from adautomix.data.memory import MemoryLoader

        return MemoryLoader(manifest, split, **options)
    if kind == "dali":
        from adautomix.data.dali import DaliLoader

        return DaliLoader(manifest, split, num_workers=num_workers, **options)
    from adautomix.data.torch_loader import TorchLoader

    return TorchLoader(manifest, split, num_workers=num_workers, **options)


def _auto_kind(manifest: Manifest) -> str:
    """The fastest kind measured (docs/benchmarks.md, "Data loaders"): memory for arrays (on the
    CPU 4x DALI and 30x torch at 28 px; on a GPU it is the GPU-resident loader), DALI for image
    files where it imports (1.6x torch on 224 px JPEGs), else torch."""
    if manifest.format == "array":
        return "memory"
    return _dali_or_torch()


def _dali_or_torch() -> str:
    from adautomix.data import dali

    if dali.available():
        return "dali"
    if dali.installed():  # a broken install: say why it is passed over
        log.warning("loader auto: not DALI, %s", dali.import_error())
    return "torch"
