"""AdAutoMix's mix block: one mask per source image from cross-attention between their features.

Spec §3 (the official `AdaptiveMask`). For N feature maps z_1..z_N of the EMA encoder:

    q_i = ReLU(W_q z_i),  k_i = ReLU(W_k z_i),  v_i = W_v z_i     (1×1 convs, d = C / reduction)
    A_i = softmax over key positions of  Σ_{j≠i} q_i k_jᵀ / √d        (logits to the others summed)
    m_i = A_i v_i,  upsampled to the image size,  M = softmax over the N masks at every pixel

The value comes from the same image as the query, the keys from the other images. With the
N(0, 0.01²) init W_v ≈ 0, so every m_i ≈ 0 and the first masks are ≈ 1/N: training starts from an
equal-weight linear mix. The masks are soft, never binarised; the label weights stay the sampled λ.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

UPSAMPLING_MODES = ("bilinear", "nearest")


def init_mix_block(module: nn.Module) -> None:
    """N(0, 0.01²) weights and zero biases for every conv, as the official mix blocks."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, std=0.01)
            nn.init.zeros_(m.bias)


class MixBlock(nn.Module):
    """What AdAutoMix's generator and AutoMix's PixelMixBlock share: λ optionally concatenated to
    the features as one more channel, the attention width d = C / reduction, the upsampling."""

    def __init__(self, in_channels: int, reduction: int, lam_concat: bool, upsampling: str):
        super().__init__()
        if upsampling not in UPSAMPLING_MODES:
            raise ValueError(
                f"upsampling {upsampling!r} is not one of {', '.join(UPSAMPLING_MODES)}"
            )
        self.lam_concat = lam_concat
        self.upsampling = upsampling
        self.dim = max(in_channels // reduction, 1)


class MaskGenerator(MixBlock):
    def __init__(
        self,
        in_channels: int,
        reduction: int = 2,
        lam_concat: bool = False,
        upsampling: str = "bilinear",
    ):
        super().__init__(in_channels, reduction, lam_concat, upsampling)
        conv_in = in_channels + int(lam_concat)
        # q and k get separate convs, each followed by a ReLU (mmcv ConvModule's default
        # activation), unlike AutoMix's one shared conv without activation.
        self.query = nn.Sequential(nn.Conv2d(conv_in, self.dim, 1), nn.ReLU())
        self.key = nn.Sequential(nn.Conv2d(conv_in, self.dim, 1), nn.ReLU())
        self.value = nn.Conv2d(conv_in, 1, 1)
        init_mix_block(self)

    def forward(
        self, features: torch.Tensor, lams: Sequence[float], size: tuple[int, int]
    ) -> torch.Tensor:
        """features: B×N×C×h×w, slot i holding image i's map; lams: the N mixing ratios (used only
        with lam_concat); size: the image (H, W). Returns B×N×H×W masks that sum to 1 per pixel."""
        # The attention runs in fp32 even under autocast: the summed logits overflow fp16.
        with torch.autocast(features.device.type, enabled=False):
            return self._masks(features.float(), lams, size)

    def _masks(
        self, features: torch.Tensor, lams: Sequence[float], size: tuple[int, int]
    ) -> torch.Tensor:
        b, n, _, h, w = features.shape
        if self.lam_concat:  # λ_i enters only as a constant plane appended to z_i
            planes = [features.new_full((b, 1, 1, h, w), float(lam)) for lam in lams]
            features = torch.cat([features, torch.cat(planes, dim=1)], dim=2)
        flat = features.flatten(0, 1)
        q = self.query(flat).view(b, n, self.dim, h * w).transpose(-1, -2)  # B N P d
        k = self.key(flat).view(b, n, self.dim, h * w)  # B N d P
        v = self.value(flat).view(b, n, h * w, 1)  # B N P 1
        others = torch.ones(n, n, device=k.device) - torch.eye(n, device=k.device)
        k_others = torch.einsum("ij,bjdp->bidp", others, k)  # Σ_{j≠i} k_j
        # Clamping instead of the official "if any inf" test keeps the step free of host syncs.
        logits = (q @ k_others).clamp(-1e25, 1e25) / math.sqrt(self.dim)
        masks = (logits.softmax(dim=-1) @ v).view(b, n, h, w)
        masks = replace_nan(masks)
        masks = F.interpolate(masks, size=size, mode=self.upsampling)
        return masks.softmax(dim=1)


def replace_nan(masks: torch.Tensor) -> torch.Tensor:
    """The official fallback for NaN pre-softmax masks: 1e-4 and 1e4 for N = 2 (the 1e4 looks like
    a typo for 1e-4 but is what ran), 0.3 for N ≥ 3. The official code first retries the product
    in float64, which only helps sums beyond float32's range and costs a host sync: skipped."""
    if masks.shape[1] == 2:
        return torch.stack([masks[:, 0].nan_to_num(1e-4), masks[:, 1].nan_to_num(1e4)], dim=1)
    return masks.nan_to_num(0.3)
