"""ResizeMix (Qin et al., 2020): paste the whole partner image, shrunk, into a box of x.

As in OpenMixup's CIFAR setting (`use_alpha=True`): the scale τ ~ Beta(α, α), redrawn uniformly
in `scope` when it falls outside; x[π] is resized (nearest) into a τH×τW box at a uniformly
random centre, clipped to the image, and λ = 1 − box area. One box per batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .sampling import mix_partner, sample_beta
from .cutmix import random_box


def sample_scale(alpha: float, scope: tuple[float, float]) -> float:
    low, high = scope
    if not 0.0 < low <= high <= 1.0:
        raise ValueError(f"resizemix scope must satisfy 0 < low <= high <= 1; got {scope}")
    tau = sample_beta(alpha, 1)[0]
    if not low <= tau <= high:
        tau = low + (high - low) * float(torch.rand(()))
    return tau


def resizemix(
    images: torch.Tensor,
    targets: torch.Tensor,
    alpha: float = 1.0,
    scope: tuple[float, float] = (0.1, 0.8),
):
    batch, _, height, width = images.shape
    tau = sample_scale(alpha, tuple(scope))
    index = mix_partner(batch, images.device)
    # random_box takes the share of x that stays, 1 − τ², and returns a box of side τ.
    top, bottom, left, right = random_box(1.0 - tau * tau, height, width)
    mixed = images.clone()
    mask = torch.ones(batch, 1, height, width, device=images.device)
    if bottom > top and right > left:  # on tiny images a box at the border can clip to nothing
        mixed[:, :, top:bottom, left:right] = F.interpolate(
            images[index], size=(bottom - top, right - left), mode="nearest"
        )
        mask[:, :, top:bottom, left:right] = 0.0
    lam = 1.0 - (bottom - top) * (right - left) / (height * width)
    return mixed, lam * targets + (1.0 - lam) * targets[index], torch.cat([mask, 1.0 - mask], 1)
