"""The "memory" loader (array datasets only): the whole uint8 array is one tensor on the device,
and the random crop and flip of a whole batch are one gather (the pad crop) or one affine_grid +
grid_sample (RandomResizedCrop). No workers, no per-sample Python: on two CPU cores this is far
faster than per-sample transforms, and on a GPU it is the GPU-resident loader. It has no
RandAugment; "auto" picks another kind for a recipe that has it."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from adautomix.data.base import Loader
from adautomix.data.crops import centre_crop, crop_boxes, reflect, resize, resize_shorter
from adautomix.data.epoch_plan import derived_seed
from adautomix.data.errors import DataError
from adautomix.data.prepare import Manifest


class MemoryLoader(Loader):
    kind = "memory"

    def __init__(self, manifest: Manifest, split: str, **options):
        super().__init__(manifest, split, **options)
        if self.train and self.recipe.randaugment:
            raise DataError(
                "the memory loader has no RandAugment (it would need per-sample ops): "
                "use --loader torch or --loader dali"
            )
        root = manifest.root
        # Channels first once, so that a batch is one gather with no per-batch permute.
        images = torch.from_numpy(np.load(root / f"{split}_images.npy")).permute(0, 3, 1, 2)
        self.labels = torch.from_numpy(np.load(root / f"{split}_labels.npy")).to(self.device)
        self.mode = self.recipe.interpolation
        if self.train and self.recipe.train_crop in ("pad", "flip"):
            # Reflect-padded once (about 1.6x the bytes at 28-32 px) and viewed as every crop
            # window: a batch's crops are then one indexing op that copies only the crops.
            # "flip" is the same gather with no padding: one window, the image itself.
            height, width = manifest.image_size
            pad = height // 8 if self.recipe.train_crop == "pad" else 0
            padded = images[:, :, reflect(torch.arange(-pad, height + pad), height)]
            padded = padded[:, :, :, reflect(torch.arange(-pad, width + pad), width)]
            self.images = padded.contiguous().to(self.device)
            self.windows = self.images.unfold(2, height, 1).unfold(3, width, 1)
            self.offsets = 2 * pad + 1
        else:
            self.images = images.contiguous().to(self.device)

    def __iter__(self):
        order = torch.from_numpy(self.indices()).to(self.device)
        generator = torch.Generator(device=self.device)
        # every rank draws the global batch's augmentation and keeps its own places (rank 0's
        # seed is the one-process seed): augmentation then does not depend on the rank count
        generator.manual_seed(derived_seed(self.seed, self.epoch, 0))
        recipe, size = self.recipe, self.image_size
        for start in range(0, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            if not self.train:
                images = self.images[index]
                if recipe.test_resize:
                    images = centre_crop(
                        resize_shorter(images, recipe.test_resize, self.mode), size
                    )
            elif recipe.train_crop in ("pad", "flip"):
                images = self._crop_and_flip(index, generator)
            else:
                images = self._resized_crop_and_flip(index, generator)
            if images.shape[-2:] != (size, size):
                images = resize(images, (size, size), self.mode)
            yield self._normalise(images), self.labels[index]

    def _crop_and_flip(self, index: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Random crop of the reflect-padded image plus a random horizontal flip."""
        count, mine = len(index) * self.world_size, slice(self.rank, None, self.world_size)
        offset = torch.randint(
            0, self.offsets, (2, count), device=self.device, generator=generator
        )[:, mine]
        flip = (torch.rand(count, device=self.device, generator=generator) < 0.5)[mine]
        # Index arrays split by a slice put the batch axis first: (B, C, H, W).
        crops = self.windows[index, :, offset[0], offset[1]]
        return torch.where(flip[:, None, None, None], crops.flip(-1), crops)

    def _resized_crop_and_flip(
        self, index: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        """RandomResizedCrop plus a random horizontal flip of a whole batch as one affine
        resampling: each output pixel reads its crop's position, mirrored when flipped.

        Unlike torchvision it does not antialias, which matters only where a crop is larger than
        the output; the official recipes that use this loader upscale (arrays are <= 64 px)."""
        images = self.images[index].float()
        if self.recipe.resize_before_crop:
            images = resize_shorter(images, self.recipe.resize_before_crop, self.mode)
        batch, channels, height, width = images.shape
        count, mine = batch * self.world_size, slice(self.rank, None, self.world_size)
        boxes = crop_boxes(count, height, width, self.recipe.crop_scale, generator)
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
        crops = F.grid_sample(
            images, grid, mode=self.mode, padding_mode="border", align_corners=False
        )
        return crops.clamp_(0, 255)  # bicubic overshoots
