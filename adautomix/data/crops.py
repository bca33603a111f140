"""Batched crop and resize maths on N×C×H×W tensors, as torchvision does them per sample: the
memory loader's RandomResizedCrop windows, resizes kept in [0, 255], centre crops, reflection.
They run wherever the tensors are (the GPU, for the GPU-resident loader)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from adautomix.data.augment import CROP_RATIO


def crop_boxes(
    count: int, height: int, width: int, scale: tuple[float, float], generator: torch.Generator
) -> tuple[torch.Tensor, ...]:
    """(top, left, height, width) of `count` RandomResizedCrop windows, float tensors of whole
    pixels, drawn as torchvision's get_params draws one: up to 10 tries of an area fraction in
    `scale` and a log-uniform aspect ratio, the first that fits wins, else the whole image
    (cut to the ratio range)."""
    device, tries = generator.device, 10
    area = (
        height
        * width
        * (
            scale[0]
            + (scale[1] - scale[0]) * torch.rand(count, tries, device=device, generator=generator)
        )
    )
    low, high = math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1])
    ratio = torch.exp(
        low + (high - low) * torch.rand(count, tries, device=device, generator=generator)
    )
    crop_w = torch.sqrt(area * ratio).round()
    crop_h = torch.sqrt(area / ratio).round()
    fits = (crop_w > 0) & (crop_w <= width) & (crop_h > 0) & (crop_h <= height)
    first = fits.int().argmax(1, keepdim=True)  # 0 where none fits; replaced below
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
    top = torch.where(
        found, (where[0] * (height - crop_h + 1)).floor(), ((height - crop_h) / 2).floor()
    )
    left = torch.where(
        found, (where[1] * (width - crop_w + 1)).floor(), ((width - crop_w) / 2).floor()
    )
    return top, left, crop_h, crop_w


def resize(images: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """Float N×C×H×W pixel values resized, antialiased, kept in [0, 255]."""
    resized = F.interpolate(images.float(), size=size, mode=mode, antialias=True)
    return resized.clamp_(0, 255)


def resize_shorter(images: torch.Tensor, shorter: int, mode: str) -> torch.Tensor:
    """Resize so that the shorter side is `shorter`, as torchvision's Resize(int) does."""
    height, width = images.shape[-2:]
    if height <= width:
        size = (shorter, int(shorter * width / height))
    else:
        size = (int(shorter * height / width), shorter)
    return resize(images, size, mode) if size != (height, width) else images.float()


def centre_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    height, width = images.shape[-2:]
    top, left = int(round((height - size) / 2)), int(round((width - size) / 2))
    return images[..., top : top + size, left : left + size]


def reflect(positions: torch.Tensor, size: int) -> torch.Tensor:
    """Reflect out-of-range positions back into [0, size) without repeating the edge, as
    padding_mode 'reflect' does."""
    positions = positions.abs()
    return torch.where(positions >= size, 2 * (size - 1) - positions, positions)
