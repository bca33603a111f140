"""CutMix (Yun et al., 2019): paste a box of x[π] into x; λ is recomputed from the clipped box.

As in OpenMixup: one box per batch, side √(1−λ)·W with a uniformly random centre clipped to the
image, and a partner permutation without fixed points (up to 10 tries). torchvision's v2.CutMix
pairs by roll and takes integer labels only, hence our own."""

from __future__ import annotations

import math

import torch

from .sampling import derangement, sample_beta


def random_box(lam: float, height: int, width: int) -> tuple[int, int, int, int]:
    """A box covering about 1−λ of the image: (top, bottom, left, right), clipped to the image."""
    cut = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * cut), int(width * cut)
    cy = int(torch.randint(height, (1,)))
    cx = int(torch.randint(width, (1,)))
    return (
        max(cy - cut_h // 2, 0),
        min(cy + cut_h // 2, height),
        max(cx - cut_w // 2, 0),
        min(cx + cut_w // 2, width),
    )


def paste_box(
    images: torch.Tensor, targets: torch.Tensor, index: torch.Tensor, box: tuple[int, int, int, int]
):
    """Paste images[index] into `box`; label weights from the realised box area."""
    top, bottom, left, right = box
    height, width = images.shape[-2:]
    mixed = images.clone()
    mixed[:, :, top:bottom, left:right] = images[index, :, top:bottom, left:right]
    lam = 1.0 - (bottom - top) * (right - left) / (height * width)
    mask = torch.ones(images.shape[0], 1, height, width, device=images.device)
    mask[:, :, top:bottom, left:right] = 0.0
    return mixed, lam * targets + (1.0 - lam) * targets[index], torch.cat([mask, 1.0 - mask], 1)


def cutmix(images: torch.Tensor, targets: torch.Tensor, alpha: float = 0.2):
    lam = sample_beta(alpha, 1)[0]
    index = derangement(images.shape[0], images.device)
    box = random_box(lam, *images.shape[-2:])
    return paste_box(images, targets, index, box)
