"""SaliencyMix (Uddin et al., 2021): CutMix with the box centred on the partner's saliency peak.

As in OpenMixup: λ ~ Beta(α, α); the saliency of ONE image, the first shuffled sample, from
OpenCV's fine-grained static saliency (opencv-contrib-python-headless); a box of side √(1−λ)
centred on its argmax, clipped to the image; the same box for the whole batch; λ from the
clipped area. OpenCV runs on the CPU, so the one image is copied to the host: one small sync.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..optional import LazyModule
from .sampling import mix_partner, sample_beta
from .cutmix import paste_box

cv2 = LazyModule("cv2", "method saliencymix (OpenCV's saliency)")  # no other method needs it


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """A (C, H, W) image in any value range as the 8-bit picture OpenCV's detector expects.

    The detector reads 8-bit intensities (a float array gives a different, meaningless map), so
    the image is stretched min-to-max over all its channels: that undoes the loader's
    normalisation up to a per-channel affine map. Colour images go to OpenCV's BGR order; other
    channel counts are averaged to grey."""
    array = image.detach().float().cpu().numpy()
    if array.shape[0] != 3:
        array = array.mean(0, keepdims=True)
    low, high = array.min(), array.max()
    scaled = np.round((array - low) / max(high - low, 1e-12) * 255.0).astype(np.uint8)
    if scaled.shape[0] == 3:
        return np.ascontiguousarray(scaled[::-1].transpose(1, 2, 0))
    return scaled[0]


def saliency_peak(image: torch.Tensor) -> tuple[int, int]:
    """(row, column) of the peak of OpenCV's fine-grained static saliency of a (C, H, W) image."""
    detector = cv2.saliency.StaticSaliencyFineGrained_create()
    ok, saliency = detector.computeSaliency(to_uint8(image))
    if not ok:
        raise RuntimeError(
            f"OpenCV's fine-grained saliency failed on an image of shape {tuple(image.shape)}"
        )
    row, col = np.unravel_index(int(np.argmax(saliency)), saliency.shape)
    return int(row), int(col)


def centred_box(
    lam: float, row: int, col: int, height: int, width: int
) -> tuple[int, int, int, int]:
    """A box of side √(1−λ) centred on (row, col): (top, bottom, left, right), clipped."""
    cut = math.sqrt(1.0 - lam)
    half_h, half_w = int(height * cut) // 2, int(width * cut) // 2
    return (
        max(row - half_h, 0),
        min(row + half_h, height),
        max(col - half_w, 0),
        min(col + half_w, width),
    )


def saliencymix(images: torch.Tensor, targets: torch.Tensor, alpha: float = 0.2):
    lam = sample_beta(alpha, 1)[0]
    index = mix_partner(images.shape[0], images.device)
    row, col = saliency_peak(images[index[0]])
    box = centred_box(lam, row, col, *images.shape[-2:])
    return paste_box(images, targets, index, box)
