"""FMix (Harris et al., 2020): a binary mask cut from low-frequency Fourier noise.

As in OpenMixup: λ ~ Beta(α, α); a random spectrum whose amplitude falls as 1/f^decay_power
becomes a smooth real image, and its top-λ fraction of pixels is kept from x, the rest taken
from x[π]. One mask per batch (the image's size), a partner permutation without fixed points.

Our own few lines because nothing fits: the PyPI package called `fmix` is an unrelated audio
tool, and the authors' reference code is not packaged. The mask is drawn with torch on the CPU
so that torch's seed governs it and no device sync is needed.
"""

from __future__ import annotations

import math

import torch

from .sampling import derangement, sample_beta


def low_frequency_noise(height: int, width: int, decay_power: float) -> torch.Tensor:
    """A (height, width) real image whose spectrum decays as 1/f^decay_power."""
    freq_y = torch.fft.fftfreq(height).view(-1, 1)
    freq_x = torch.fft.rfftfreq(width).view(1, -1)
    freq = torch.sqrt(freq_y**2 + freq_x**2)
    # The lowest non-zero frequency also caps the DC term, so no single term dominates.
    amplitude = 1.0 / freq.clamp_min(1.0 / max(height, width)) ** decay_power
    real, imag = torch.randn(2, *freq.shape)
    return torch.fft.irfft2(torch.complex(amplitude * real, amplitude * imag), s=(height, width))


def binarise_top(noise: torch.Tensor, lam: float) -> torch.Tensor:
    """1 on the largest λ fraction of `noise`, 0 elsewhere. λ·pixels is rounded up or down with
    equal chance, as in the reference code, so the mask mean is unbiased."""
    pixels = noise.numel()
    round_up = bool(torch.rand(()) < 0.5)
    keep = math.ceil(lam * pixels) if round_up else math.floor(lam * pixels)
    mask = torch.zeros(pixels)
    mask[noise.flatten().argsort(descending=True)[:keep]] = 1.0
    return mask.view_as(noise)


def fmix(images: torch.Tensor, targets: torch.Tensor, alpha: float = 0.2, decay_power: float = 3.0):
    height, width = images.shape[-2:]
    mask = binarise_top(low_frequency_noise(height, width, decay_power), sample_beta(alpha, 1)[0])
    # The label weight is the realised area: λ up to rounding λ·H·W to whole pixels.
    lam = float(mask.mean())
    mask = mask.to(images.device)
    index = derangement(images.shape[0], images.device)
    mixed = torch.where(mask.bool(), images, images[index])
    masks = torch.stack([mask, 1.0 - mask]).expand(images.shape[0], 2, height, width)
    return mixed, lam * targets + (1.0 - lam) * targets[index], masks
