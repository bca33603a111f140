"""build_loader: a prepared dataset -> batches of (normalised float32 images, int64 labels) on the
training device.

Two kinds share one epoch plan and one set of recipes:
- "memory" (array datasets only): the whole uint8 array is one tensor on the device, and the
  random crop and flip of a whole batch are one gather (the pad crop) or one affine_grid +
  grid_sample (RandomResizedCrop). No workers, no per-sample Python: on two CPU cores this is far
  faster than per-sample transforms, and on a GPU it is the GPU-resident loader. It has no
  RandAugment; "auto" picks another kind for a recipe that has it.
- "torch": a DataLoader with per-sample torchvision.transforms.v2, for folder datasets (and arrays
  when wanted). Batches cross to the device as uint8 and are normalised there.

The epoch plan works like DistributedSampler: the train split is shuffled by a permutation drawn
from (seed, epoch), every rank reads every world_size-th index of it (rank r from position r), and
the partial last (global) batch is dropped so that every rank runs the same number of steps; the
test split is read in order, split into contiguous per-rank chunks, and its last partial batch is
kept. Interleaving makes step s of N ranks with batch b read the very images of step s of one
process with batch N·b, so the number of ranks changes neither an epoch's global batches nor
its length, and a run resumes on another number of ranks in the same data stream. `subset` keeps the first N
indices of one fixed permutation (seed 0) whatever the run's seed, so runs with different seeds
see the same images.

Augmentation follows a Recipe (augment.py: the crop, its scale, the interpolation, a resize
first, RandAugment), by default the dataset's own. Array datasets (≤ 64 px): a random crop with
native/8 pixels of reflect padding (4 at 32 px) and a horizontal flip; test images as they are.
Folder datasets: RandomResizedCrop(image_size, default 224) and a flip; test
Resize(image_size·256/224) and CenterCrop(image_size). Augmentation is a function of
(seed, epoch) and the sample's place in the global epoch order: the memory loader draws a whole
global batch's crops from a generator seeded by (seed, epoch) and keeps its rank's columns, the
torch loader hands every sample the seed of its global position along with its index, so neither
the worker count nor persistent workers nor resuming mid-run, nor the number of ranks, changes
what an epoch looks like. (DALI's draws follow (seed, epoch, rank): dali.py.)
"""

from __future__ import annotations

import logging
import math
import weakref
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Sampler

from adautomix.data.augment import (CROP_RATIO, RANDAUGMENT_BINS, RANDAUGMENT_MAGNITUDE,
                                    RANDAUGMENT_OPS, Recipe)
from adautomix.data.errors import DataError
from adautomix.data.prepare import Manifest, ensure_dataset

if TYPE_CHECKING:
    from torchvision.transforms import v2

KINDS = ("auto", "torch", "memory", "dali")
log = logging.getLogger("adautomix.data")


def build_loader(manifest_or_name: Manifest | str, split: str, *, data_root: str = "data",
                 batch_size: int, train: bool, kind: str = "auto",
                 device: str | torch.device = "cpu", seed: int = 0, subset: int = 0,
                 num_workers: int = 2, image_size: int | None = None, rank: int = 0,
                 world_size: int = 1, recipe: Recipe | None = None) -> "Loader":
    """A loader over `split` ("train" or "test") of a prepared dataset; `train` turns on
    shuffling, augmentation and dropping the partial last batch. kind "auto" picks the fastest
    kind measured (see _auto_kind) and logs its choice.

    `recipe` (augment.py) says how images are cropped, resized and augmented; without one, the
    dataset's default recipe at `image_size` (None: the native size, 224 for folders)."""
    manifest = (ensure_dataset(manifest_or_name, data_root)
                if isinstance(manifest_or_name, str) else manifest_or_name)
    if kind not in KINDS:
        raise DataError(f"unknown loader kind {kind!r}; build_loader makes {', '.join(KINDS)}")
    if recipe is None:
        recipe = Recipe.resolve(manifest, image_size=image_size or 0)
    elif image_size and image_size != recipe.image_size:
        raise DataError(f"image_size {image_size} contradicts the recipe's "
                        f"{recipe.image_size}; pass the size in the recipe only")
    randaugment = train and recipe.randaugment
    if kind == "auto":
        kind = _auto_kind(manifest, torch.device(device))
        if kind == "memory" and randaugment:
            from adautomix.data import dali
            kind = "dali" if dali.available() else "torch"
            log.info("loader auto: %s for %s on %s (the memory loader has no RandAugment)",
                     kind, manifest.name, device)
        else:
            log.info("loader auto: %s for %s on %s", kind, manifest.name, device)
    if kind == "memory" and manifest.format != "array":
        raise DataError(f"the memory loader needs an array dataset; {manifest.name} is stored as "
                        "image files: use the torch loader")
    options = dict(batch_size=batch_size, train=train, device=torch.device(device), seed=seed,
                   subset=subset, recipe=recipe, rank=rank, world_size=world_size)
    if kind == "memory":
        return MemoryLoader(manifest, split, **options)
    if kind == "dali":
        from adautomix.data.dali import DaliLoader   # dali imports this module
        return DaliLoader(manifest, split, num_workers=num_workers, **options)
    return TorchLoader(manifest, split, num_workers=num_workers, **options)


def _auto_kind(manifest: Manifest, device: torch.device) -> str:
    """The GPU-resident memory loader for arrays on a GPU, else DALI where it is installed,
    else memory for arrays and torch for image files (docs/benchmarks.md, "Data loaders")."""
    from adautomix.data import dali
    if manifest.format == "array" and device.type == "cuda":
        return "memory"
    if dali.available():
        return "dali"
    return "memory" if manifest.format == "array" else "torch"


def _derived_seed(*parts: int) -> int:
    """A 63-bit seed mixed from several integers, so (seed, epoch) pairs never collide."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1, np.uint64)[0] >> 1)


def epoch_indices(count: int, *, train: bool, batch_size: int, seed: int, epoch: int,
                  subset: int, rank: int, world_size: int) -> np.ndarray:
    """The sample indices one rank reads in one epoch, in reading order."""
    pool = np.arange(count)
    if subset:
        pool = np.random.default_rng(0).permutation(count)[:subset]
        if not train:
            pool = np.sort(pool)   # same images, read in order
    if train:
        order = pool[np.random.default_rng([seed, epoch]).permutation(len(pool))]
        share = len(order) // world_size
        usable = (share - share % batch_size) * world_size
        return order[:usable][rank::world_size]
    return pool[len(pool) * rank // world_size:len(pool) * (rank + 1) // world_size]


class Loader:
    """What every kind shares: the epoch plan, the dataset's facts and the normalisation."""

    kind = ""

    def __init__(self, manifest: Manifest, split: str, *, batch_size: int, train: bool,
                 device: torch.device, seed: int, subset: int, recipe: Recipe,
                 rank: int, world_size: int):
        if split not in manifest.counts:
            raise DataError(f"{manifest.name} has no split {split!r}; "
                            f"valid: {', '.join(manifest.counts)}")
        if not 0 <= rank < world_size:
            raise DataError(f"rank {rank} is outside [0, world_size={world_size})")
        count = manifest.counts[split]
        if subset > count:
            raise DataError(f"subset {subset} is larger than the {count} images of "
                            f"{manifest.name}/{split}; lower it or use 0 for all")
        self.manifest, self.split, self.train = manifest, split, train
        self.batch_size, self.device, self.seed = batch_size, device, seed
        self.rank, self.world_size, self.subset = rank, world_size, subset
        self.epoch = 0
        self.num_classes = manifest.num_classes
        self.in_chans = manifest.channels
        self.mean, self.std = recipe.mean or manifest.mean, recipe.std or manifest.std
        self.recipe = recipe
        self.image_size = recipe.image_size
        self.samples = len(self.indices())
        if len(self) == 0:
            raise DataError(f"{manifest.name}/{split} gives rank {rank} of {world_size} "
                            f"{self.samples} images, less than one batch of {batch_size}; "
                            "lower the batch size or the subset")
        shape = (1, self.in_chans, 1, 1)
        self._shift = torch.tensor(self.mean, device=device).view(shape) * 255
        self._scale = torch.tensor(self.std, device=device).view(shape) * 255

    def set_epoch(self, epoch: int) -> None:
        """Pick the epoch whose shuffle and augmentation the next iteration reproduces."""
        self.epoch = epoch

    def indices(self) -> np.ndarray:
        return epoch_indices(self.manifest.counts[self.split], train=self.train,
                             batch_size=self.batch_size, seed=self.seed, epoch=self.epoch,
                             subset=self.subset, rank=self.rank, world_size=self.world_size)

    def __len__(self) -> int:
        return math.ceil(self.samples / self.batch_size)

    def _normalise(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 N×C×H×W -> float32, (x/255 - mean) / std."""
        return (images.float() - self._shift) / self._scale


class MemoryLoader(Loader):
    kind = "memory"

    def __init__(self, manifest: Manifest, split: str, **options):
        super().__init__(manifest, split, **options)
        if self.train and self.recipe.randaugment:
            raise DataError("the memory loader has no RandAugment (it would need per-sample ops): "
                            "use --loader torch or --loader dali")
        root = manifest.root
        # Channels first once, so that a batch is one gather with no per-batch permute.
        images = torch.from_numpy(np.load(root / f"{split}_images.npy")).permute(0, 3, 1, 2)
        self.labels = torch.from_numpy(np.load(root / f"{split}_labels.npy")).to(self.device)
        self.mode = self.recipe.interpolation
        if self.train and self.recipe.train_crop == "pad":
            # Reflect-padded once (about 1.6x the bytes at 28-32 px) and viewed as every crop
            # window: a batch's crops are then one indexing op that copies only the crops.
            height, width = manifest.image_size
            pad = height // 8
            padded = images[:, :, _reflect(torch.arange(-pad, height + pad), height)]
            padded = padded[:, :, :, _reflect(torch.arange(-pad, width + pad), width)]
            self.images = padded.contiguous().to(self.device)
            self.windows = self.images.unfold(2, height, 1).unfold(3, width, 1)
            self.offsets = 2 * pad + 1
        else:
            self.images = images.contiguous().to(self.device)

    def __iter__(self):
        order = torch.from_numpy(self.indices()).to(self.device)
        generator = torch.Generator(device=self.device)
        # every rank draws the global batch's augmentation and keeps its own columns (rank 0's
        # seed is the one-process seed)
        generator.manual_seed(_derived_seed(self.seed, self.epoch, 0))
        recipe, size = self.recipe, self.image_size
        for start in range(0, len(order), self.batch_size):
            index = order[start:start + self.batch_size]
            if not self.train:
                images = self.images[index]
                if recipe.test_resize:
                    images = _centre_crop(_resize_shorter(images, recipe.test_resize, self.mode),
                                          size)
            elif recipe.train_crop == "pad":
                images = self._crop_and_flip(index, generator)
            else:
                images = self._resized_crop_and_flip(index, generator)
            if images.shape[-2:] != (size, size):
                images = _resize(images, (size, size), self.mode)
            yield self._normalise(images), self.labels[index]

    def _crop_and_flip(self, index: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Random crop of the reflect-padded image plus a random horizontal flip."""
        count, mine = len(index) * self.world_size, slice(self.rank, None, self.world_size)
        offset = torch.randint(0, self.offsets, (2, count), device=self.device,
                               generator=generator)[:, mine]
        flip = (torch.rand(count, device=self.device, generator=generator) < 0.5)[mine]
        # Index arrays split by a slice put the batch axis first: (B, C, H, W).
        crops = self.windows[index, :, offset[0], offset[1]]
        return torch.where(flip[:, None, None, None], crops.flip(-1), crops)

    def _resized_crop_and_flip(self, index: torch.Tensor,
                               generator: torch.Generator) -> torch.Tensor:
        """RandomResizedCrop plus a random horizontal flip of a whole batch as one affine
        resampling: each output pixel reads its crop's position, mirrored when flipped.

        Unlike torchvision it does not antialias, which matters only where a crop is larger than
        the output; the official recipes that use this loader upscale (arrays are <= 64 px)."""
        images = self.images[index].float()
        if self.recipe.resize_before_crop:
            images = _resize_shorter(images, self.recipe.resize_before_crop, self.mode)
        batch, channels, height, width = images.shape
        count, mine = batch * self.world_size, slice(self.rank, None, self.world_size)
        boxes = _crop_boxes(count, height, width, self.recipe.crop_scale, generator)
        top, left, crop_h, crop_w = (b[mine] for b in boxes)
        flip = (torch.rand(count, device=self.device, generator=generator) < 0.5)[mine]
        # affine_grid maps output coordinates in [-1, 1] to input ones; with
        # align_corners=False, -1 and 1 are the outer edges of the crop's edge pixels.
        theta = torch.zeros(batch, 2, 3, device=self.device)
        theta[:, 0, 0] = torch.where(flip, -crop_w, crop_w) / width
        theta[:, 0, 2] = (2 * left + crop_w) / width - 1
        theta[:, 1, 1] = crop_h / height
        theta[:, 1, 2] = (2 * top + crop_h) / height - 1
        size = self.image_size
        grid = F.affine_grid(theta, [batch, channels, size, size], align_corners=False)
        crops = F.grid_sample(images, grid, mode=self.mode, padding_mode="border",
                              align_corners=False)
        return crops.clamp_(0, 255)   # bicubic overshoots


def _crop_boxes(count: int, height: int, width: int, scale: tuple[float, float],
                generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """(top, left, height, width) of `count` RandomResizedCrop windows, float tensors of whole
    pixels, drawn as torchvision's get_params draws one: up to 10 tries of an area fraction in
    `scale` and a log-uniform aspect ratio, the first that fits wins, else the whole image
    (cut to the ratio range)."""
    device, tries = generator.device, 10
    area = height * width * (scale[0] + (scale[1] - scale[0]) *
                             torch.rand(count, tries, device=device, generator=generator))
    low, high = math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1])
    ratio = torch.exp(low + (high - low) *
                      torch.rand(count, tries, device=device, generator=generator))
    crop_w = torch.sqrt(area * ratio).round()
    crop_h = torch.sqrt(area / ratio).round()
    fits = (crop_w > 0) & (crop_w <= width) & (crop_h > 0) & (crop_h <= height)
    first = fits.int().argmax(1, keepdim=True)   # 0 where none fits; replaced below
    crop_w = crop_w.gather(1, first)[:, 0]
    crop_h = crop_h.gather(1, first)[:, 0]
    whole_w, whole_h = float(width), float(height)
    if width / height < CROP_RATIO[0]:
        whole_h = float(round(width / CROP_RATIO[0]))
    elif width / height > CROP_RATIO[1]:
        whole_w = float(round(height * CROP_RATIO[1]))
    found = fits.any(1)
    crop_w = torch.where(found, crop_w, whole_w)
    crop_h = torch.where(found, crop_h, whole_h)
    where = torch.rand(2, count, device=device, generator=generator)
    top = torch.where(found, (where[0] * (height - crop_h + 1)).floor(),
                      ((height - crop_h) / 2).floor())
    left = torch.where(found, (where[1] * (width - crop_w + 1)).floor(),
                       ((width - crop_w) / 2).floor())
    return top, left, crop_h, crop_w


def _resize(images: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """Float N×C×H×W pixel values resized, antialiased, kept in [0, 255]."""
    resized = F.interpolate(images.float(), size=size, mode=mode, antialias=True)
    return resized.clamp_(0, 255)


def _resize_shorter(images: torch.Tensor, shorter: int, mode: str) -> torch.Tensor:
    """Resize so that the shorter side is `shorter`, as torchvision's Resize(int) does."""
    height, width = images.shape[-2:]
    if height <= width:
        size = (shorter, int(shorter * width / height))
    else:
        size = (int(shorter * height / width), shorter)
    return _resize(images, size, mode) if size != (height, width) else images.float()


def _centre_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    height, width = images.shape[-2:]
    top, left = int(round((height - size) / 2)), int(round((width - size) / 2))
    return images[..., top:top + size, left:left + size]


def _reflect(positions: torch.Tensor, size: int) -> torch.Tensor:
    """Reflect out-of-range positions back into [0, size) without repeating the edge, as
    padding_mode 'reflect' does."""
    positions = positions.abs()
    return torch.where(positions >= size, 2 * (size - 1) - positions, positions)


class TorchLoader(Loader):
    kind = "torch"

    def __init__(self, manifest: Manifest, split: str, *, num_workers: int, **options):
        super().__init__(manifest, split, **options)
        transform = _transform(manifest, self.recipe, self.train)
        dataset = (ArrayDataset(manifest, split, transform) if manifest.format == "array"
                   else FolderDataset(manifest, split, transform))
        self.loader = DataLoader(dataset, batch_size=self.batch_size,
                                 sampler=_PlanSampler(self), num_workers=num_workers,
                                 persistent_workers=num_workers > 0,
                                 pin_memory=self.device.type == "cuda")

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
        seeds = np.random.default_rng(_derived_seed(loader.seed, loader.epoch, 0))
        world, rank = loader.world_size, loader.rank
        per_sample = seeds.integers(0, 2 ** 62, len(indices) * world)[rank::world]
        return iter(zip(indices.tolist(), per_sample.tolist(), strict=True))

    def __len__(self) -> int:
        return self.loader.samples


def _transform(manifest: Manifest, recipe: Recipe, train: bool) -> v2.Transform:
    """Per-sample transforms on uint8 C×H×W tensors (normalisation happens on the device)."""
    # torchvision is imported here, not at the top: importing it loads torch._dynamo (seconds),
    # which the memory and DALI kinds never need.
    from torchvision.transforms import InterpolationMode, v2
    size = recipe.image_size
    mode = {"bilinear": InterpolationMode.BILINEAR,
            "bicubic": InterpolationMode.BICUBIC}[recipe.interpolation]
    steps = []
    if train and recipe.train_crop == "rrc":
        if recipe.resize_before_crop:
            steps.append(v2.Resize(recipe.resize_before_crop, mode, antialias=True))
        steps += [v2.RandomResizedCrop(size, recipe.crop_scale, CROP_RATIO, mode, antialias=True),
                  v2.RandomHorizontalFlip()]
    else:
        native = manifest.image_size
        if train:
            steps += [v2.RandomCrop(native, padding=native[0] // 8, padding_mode="reflect"),
                      v2.RandomHorizontalFlip()]
        if not train and recipe.test_resize:
            steps += [v2.Resize(recipe.test_resize, mode, antialias=True), v2.CenterCrop(size)]
        elif manifest.format == "array" and native[0] != size:
            steps.append(v2.Resize(size, mode, antialias=True))
    if train and recipe.randaugment:
        # Bilinear for its rotations and shears, as DALI's RandAugment (which has no bicubic).
        steps.append(v2.RandAugment(RANDAUGMENT_OPS, RANDAUGMENT_MAGNITUDE, RANDAUGMENT_BINS,
                                    InterpolationMode.BILINEAR))
    return v2.Compose(steps) if steps else v2.Identity()


def _augmented(transform: v2.Transform, image: torch.Tensor, seed: int) -> torch.Tensor:
    # v2 transforms draw from torch's global CPU generator; fork it so the sample's own seed
    # rules without disturbing the caller's stream (which matters when num_workers is 0).
    # torch.manual_seed would also seed every accelerator backend, at a millisecond a sample.
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        return transform(image)


class ArrayDataset(Dataset):
    def __init__(self, manifest: Manifest, split: str, transform: v2.Transform):
        # Memory-mapped: workers share the page cache instead of each holding a copy.
        self.images = np.load(manifest.root / f"{split}_images.npy", mmap_mode="r")
        self.labels = np.load(manifest.root / f"{split}_labels.npy")
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor, int]:
        index, seed = item
        image = torch.from_numpy(np.array(self.images[index])).permute(2, 0, 1)
        return _augmented(self.transform, image, seed), int(self.labels[index])


class FolderDataset(Dataset):
    def __init__(self, manifest: Manifest, split: str, transform: v2.Transform):
        lines = (manifest.root / f"{split}_list.txt").read_text().splitlines()
        pairs = [line.rsplit(" ", 1) for line in lines]
        self.files = [str(manifest.root / path) for path, _ in pairs]
        self.labels = [int(label) for _, label in pairs]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor, int]:
        from torchvision.io import ImageReadMode, decode_image   # cached after the first call
        index, seed = item
        image = decode_image(self.files[index], mode=ImageReadMode.RGB)
        return _augmented(self.transform, image, seed), self.labels[index]
