"""DALI loaders for both canonical dataset formats; the only module that imports nvidia.dali.

DALI is imported inside functions, so the package works where it is not installed; `available()`
says whether it is. The loader shares the epoch plan of epoch_plan.py (`epoch_indices`: the same
shuffle from (seed, epoch), the same per-rank slices, train drops the partial last batch, test
keeps it), so switching loader kinds changes neither which images an epoch holds nor their order.

Each epoch builds a fresh pipeline (a few milliseconds; about a second with RandAugment, whose
per-sample choice of ops needs DALI conditionals and so pipeline_def's rewrite of the graph
function): its sample list is that epoch's plan and its seed is derived from (seed, epoch, rank),
so set_epoch reproduces an epoch exactly on resume, as with the other kinds. The augmentation
draws differ from the other kinds', the recipes (augment.py) do not.

- Array datasets: fn.external_source feeds the batch's rows from the memory-mapped .npy file.
  The pad crop: rows reflect-padded by numpy (DALI's crop pads only with a constant), and at the
  native size one fused crop_mirror_normalize crops, flips, normalises and transposes to NCHW. It
  measured twice as fast as fn.readers.numpy, which would also need one .npy file per image
  (docs/benchmarks.md). RandomResizedCrop: fn.random_resized_crop.
- Folder datasets: fn.readers.file reads the split's file list, sharded by shard_id/num_shards;
  the train split is decoded by fn.decoders.image_random_crop, which decodes only the
  RandomResizedCrop window (with resize_before_crop: decoded whole, resized, then
  fn.random_resized_crop); the test split is resized and centre-cropped.
- Every resize happens on the uint8 image, as torchvision's does; RandAugment is DALI's
  auto_aug.rand_augment (torchvision's 14 ops and magnitude ranges), on the image_size crop.

Decoding and augmentation run on the GPU ("mixed" decoder) when the loader's device is CUDA and
on CPU threads (num_workers of them) otherwise; a CPU pipeline needs device_id=None.
"""

from __future__ import annotations

import functools
import importlib.util
import itertools
import warnings

import numpy as np
import torch

from adautomix.data.augment import (
    CROP_RATIO,
    RANDAUGMENT_BINS,
    RANDAUGMENT_MAGNITUDE,
    RANDAUGMENT_OPS,
)
from adautomix.data.errors import DataError
from adautomix.data.base import Loader
from adautomix.data.epoch_plan import derived_seed, epoch_indices
from adautomix.data.prepare import Manifest, read_list
from adautomix.data.sources import decode_image

# Batches DALI prepares ahead of the one being consumed.
PREFETCH = 2


def installed() -> bool:
    """Whether NVIDIA DALI (the `dali` extra) is installed, whether or not it imports."""
    return importlib.util.find_spec("nvidia.dali") is not None


@functools.cache
def import_error() -> str | None:
    """Why DALI cannot be used here, or None when it imports. An installed DALI can still fail
    (a missing CUDA or codec library, a wheel for another platform): that is a broken install,
    which loader kind 'dali' and the tests report rather than hide."""
    if not installed():
        return "NVIDIA DALI is not installed: `pip install -e .[dali]`"
    try:
        import nvidia.dali  # noqa: F401
        import nvidia.dali.plugin.pytorch  # noqa: F401
    except Exception as error:  # ImportError, or OSError from a missing shared library
        return (
            f"NVIDIA DALI is installed but fails to import "
            f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})"
        )
    return None


def available() -> bool:
    """Whether DALI is installed and imports."""
    return import_error() is None


class DaliLoader(Loader):
    kind = "dali"

    def __init__(self, manifest: Manifest, split: str, *, num_workers: int, **options):
        if not available():
            raise DataError(
                f"loader kind 'dali': {import_error() or 'NVIDIA DALI is unavailable'}; "
                "or use --loader torch"
            )
        super().__init__(manifest, split, **options)
        self.num_threads = max(1, num_workers)
        self.device_id = None
        if self.device.type == "cuda":
            self.device_id = (
                self.device.index if self.device.index is not None else torch.cuda.current_device()
            )
        root = manifest.root
        if manifest.format == "array":
            # Memory-mapped: ranks and epochs share the page cache instead of holding copies.
            self.images = np.load(root / f"{split}_images.npy", mmap_mode="r")
            self.labels = np.load(root / f"{split}_labels.npy")
        else:
            self.files, labels = read_list(root, split)
            self.labels = np.array(labels, np.int64)

    def __iter__(self):
        pipe = (
            self._array_pipeline() if self.manifest.format == "array" else self._folder_pipeline()
        )
        from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy

        consumed = 0
        try:
            pipe.build()
            if self.manifest.format == "array":
                batches = DALIGenericIterator(pipe, ["images", "labels"])
            else:
                # A test shard one image shorter than the longest ends its epoch with an
                # empty batch; islice stops before it.
                policy = LastBatchPolicy.DROP if self.train else LastBatchPolicy.PARTIAL
                batches = DALIGenericIterator(
                    pipe, ["images", "labels"], reader_name="files", last_batch_policy=policy
                )
            for (batch,) in itertools.islice(batches, len(self)):
                yield batch["images"], batch["labels"]
                consumed += 1
        except RuntimeError as error:
            bad_file = self._find_bad_file(consumed) if self.manifest.format == "folder" else None
            if bad_file is None:
                raise
            raise bad_file from error

    def _pipeline(self, graph):
        """This epoch's pipeline of `graph`, a function that returns the pipeline's outputs."""
        from nvidia.dali import pipeline_def

        # RandAugment picks its ops per sample with DALI conditionals, which only pipeline_def
        # can turn on (it rewrites the graph function's `if`s).
        build = pipeline_def(
            graph,
            enable_conditionals=self.train and self.recipe.randaugment,
            batch_size=self.batch_size,
            num_threads=self.num_threads,
            device_id=self.device_id,
            prefetch_queue_depth=PREFETCH,
            seed=derived_seed(self.seed, self.epoch, self.rank),
        )
        return build()

    def _interp(self):
        from nvidia.dali import types

        return types.INTERP_CUBIC if self.recipe.interpolation == "bicubic" else types.INTERP_LINEAR

    def _resized_crop(self, images):
        """[Resize the shorter side to resize_before_crop,] RandomResizedCrop(image_size)."""
        from nvidia.dali import fn

        size, interp = self.image_size, self._interp()
        if self.recipe.resize_before_crop:
            images = fn.resize(
                images,
                resize_shorter=self.recipe.resize_before_crop,
                interp_type=interp,
                antialias=True,
            )
        return fn.random_resized_crop(
            images,
            size=[size, size],
            random_area=list(self.recipe.crop_scale),
            random_aspect_ratio=list(CROP_RATIO),
            interp_type=interp,
            antialias=True,
        )

    def _randaugment(self, images):
        """RandAugment on uint8 HWC images of image_size, when the recipe has it."""
        if not (self.train and self.recipe.randaugment):
            return images
        from nvidia.dali import types
        from nvidia.dali.auto_aug import rand_augment

        # DALI 2.4's own suite calls deprecated fn.experimental aliases and forces their
        # warnings past any filter, once per epoch; recording them is the way to drop them.
        with warnings.catch_warnings(record=True):
            # shape: translations scale with the image, as torchvision's; fill 0 as torchvision.
            return rand_augment.rand_augment(
                images,
                n=RANDAUGMENT_OPS,
                m=RANDAUGMENT_MAGNITUDE,
                num_magnitude_bins=RANDAUGMENT_BINS,
                shape=(self.image_size,) * 2,
                fill_value=0,
                interp_type=types.INTERP_LINEAR,
            )

    def _crop_mirror_normalize(self, images, **crop_and_flip):
        """uint8 HWC -> float32 CHW, (x/255 - mean) / std, fused with any crop and flip."""
        from nvidia.dali import fn, types

        return fn.crop_mirror_normalize(
            images,
            dtype=types.FLOAT,
            output_layout="CHW",
            **crop_and_flip,
            mean=[255 * m for m in self.mean],
            std=[255 * s for s in self.std],
        )

    def _array_pipeline(self):
        from nvidia.dali import fn

        height, width = self.manifest.image_size
        size, recipe = self.image_size, self.recipe
        # "flip" is the pad crop with no padding: one position, the image itself
        pad_crop = self.train and recipe.train_crop in ("pad", "flip")
        randaugment = self.train and recipe.randaugment
        padding = height // 8 if self.train and recipe.train_crop == "pad" else 0

        def graph():
            images, labels = fn.external_source(
                _array_batches(self.images, self.labels, self.indices(), self.batch_size, padding),
                num_outputs=2,
                batch=True,
                layout=["HWC", ""],
            )
            images, labels = self._to_device(images, labels)
            crop_and_flip = {}
            if pad_crop:
                # Offsets 0..2p in whole pixels: DALI places a crop at pos·(padded - size).
                positions = [i / (2 * padding) for i in range(2 * padding + 1)] if padding else [0]
                crop = dict(
                    crop=(height, width),
                    crop_pos_x=fn.random.uniform(values=positions),
                    crop_pos_y=fn.random.uniform(values=positions),
                )
                if size == height and not randaugment:
                    crop_and_flip = crop  # the fast path: one fused op
                else:  # resize and RandAugment need the crop first
                    images = fn.crop(images, **crop)
                crop_and_flip["mirror"] = fn.random.coin_flip()
            elif self.train:
                images = self._resized_crop(images)
                crop_and_flip = dict(mirror=fn.random.coin_flip())
            elif recipe.test_resize:
                images = fn.resize(
                    images,
                    resize_shorter=recipe.test_resize,
                    interp_type=self._interp(),
                    antialias=True,
                )
                crop_and_flip = dict(crop=(size, size))
            if (pad_crop or not self.train and not recipe.test_resize) and size != height:
                # On uint8, as the torch kind: rounded, and bicubic's overshoot saturates.
                images = fn.resize(
                    images, size=[size, size], interp_type=self._interp(), antialias=True
                )
            images = self._randaugment(images)
            images = self._crop_mirror_normalize(images, **crop_and_flip)
            return images, labels

        return self._pipeline(graph)

    def _folder_pipeline(self):
        from nvidia.dali import fn, types

        # fn.readers.file cuts its list into num_shards contiguous pieces at the same places as
        # the epoch plan cuts the epoch into ranks, so the list is every rank's plan in rank
        # order and shard `rank` reads exactly this rank's plan.
        count = self.manifest.counts[self.split]
        order = np.concatenate(
            [
                epoch_indices(
                    count,
                    train=self.train,
                    batch_size=self.batch_size,
                    seed=self.seed,
                    epoch=self.epoch,
                    subset=self.subset,
                    rank=rank,
                    world_size=self.world_size,
                    pool=self.pool,
                )
                for rank in range(self.world_size)
            ]
        )
        size, recipe = self.image_size, self.recipe
        decoder = "cpu" if self.device_id is None else "mixed"

        def graph():
            encoded, labels = fn.readers.file(
                file_root=str(self.manifest.root),
                files=[self.files[i] for i in order],
                labels=self.labels[order].tolist(),
                shard_id=self.rank,
                num_shards=self.world_size,
                pad_last_batch=True,
                name="files",
            )
            labels = fn.reshape(fn.cast(labels, dtype=types.INT64), shape=[])
            if self.train and not recipe.resize_before_crop:
                # Decodes only the crop window.
                images = fn.decoders.image_random_crop(
                    encoded,
                    device=decoder,
                    output_type=types.RGB,
                    random_area=list(recipe.crop_scale),
                    random_aspect_ratio=list(CROP_RATIO),
                )
                images = fn.resize(
                    images, size=[size, size], interp_type=self._interp(), antialias=True
                )
            elif self.train:
                images = fn.decoders.image(encoded, device=decoder, output_type=types.RGB)
                images = self._resized_crop(images)
            else:
                images = fn.decoders.image(encoded, device=decoder, output_type=types.RGB)
                images = fn.resize(
                    images,
                    resize_shorter=recipe.test_resize,
                    interp_type=self._interp(),
                    antialias=True,
                )
            images, labels = self._to_device(images, labels)
            images = self._randaugment(images)
            if self.train:
                images = self._crop_mirror_normalize(images, mirror=fn.random.coin_flip())
            else:
                images = self._crop_mirror_normalize(images, crop=(size, size))
            return images, labels

        return self._pipeline(graph)

    def _to_device(self, images, labels):
        if self.device_id is None:
            return images, labels
        return images.gpu(), labels.gpu()

    def _find_bad_file(self, consumed: int) -> DataError | None:
        """The DataError naming the first unreadable image among the batches that were in
        flight, or None if they all decode. DALI's decoders do not always name the file they
        failed on: one that is no image at all gives just "nvImageCodec failure"."""
        start = consumed * self.batch_size
        for index in self.indices()[start : start + (PREFETCH + 2) * self.batch_size]:
            try:
                decode_image(self.manifest.root / self.files[index], draft_size=(8, 8))
            except DataError as bad_file:
                return bad_file
        return None


def _array_batches(
    images: np.ndarray, labels: np.ndarray, indices: np.ndarray, batch_size: int, padding: int
):
    """(uint8 N×H×W×C images, int64 labels) per batch of the plan, the images reflect-padded."""
    for start in range(0, len(indices), batch_size):
        rows = indices[start : start + batch_size]
        batch = images[rows]
        if padding:
            batch = np.pad(
                batch, ((0, 0), (padding, padding), (padding, padding), (0, 0)), mode="reflect"
            )
        yield batch, labels[rows]
