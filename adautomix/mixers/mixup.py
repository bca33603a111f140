"""MixUp (Zhang et al., 2018): x̃ = λx + (1−λ)x[π], targets mixed with the same λ.

torchvision.transforms.v2.MixUp has the same maths but takes integer labels only; our targets
are already soft (label smoothing, N-image mixes), so the few lines live here."""

from __future__ import annotations

import torch

from .sampling import mix_partner, sample_beta


def mixup(images: torch.Tensor, targets: torch.Tensor, alpha: float = 1.0):
    lam = sample_beta(alpha, 1)[0]
    index = mix_partner(images.shape[0], images.device)
    mixed = images.mul(lam).add_(images[index], alpha=1.0 - lam)
    masks = (
        torch.tensor([lam, 1.0 - lam], device=images.device)
        .view(1, 2, 1, 1)
        .expand(images.shape[0], 2, *images.shape[2:])
    )
    return mixed, lam * targets + (1.0 - lam) * targets[index], masks
