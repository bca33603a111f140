"""Exponential moving averages of a network's weights.

Two flavours are needed:
- the engine's generic EMA (timm's ModelEmaV2 style): parameters and BN buffers averaged, the
  copy only ever run in eval mode, a constant decay after a warm-up (below);
- AdAutoMix/AutoMix's teacher (spec §1, §2 step 9): parameters only, because the teacher runs in
  train mode and keeps its own BN running statistics, with a momentum that is constant for the
  first part of training and then follows a cosine in the absolute iteration count.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


def cosine_momentum(
    step: int, total_steps: int, base: float, end: float, start_fraction: float = 0.1
) -> float:
    """OpenMixup's CosineScheduleHook with warming_up='constant'.

    Constant `base` before start_fraction·T; from there m = end − (end − base)·(1 + cos(π t/T))/2.
    The phase uses the absolute t, not the time since start_fraction·T (so the value at 0.1T is
    ≈ base, not a jump)."""
    if total_steps <= 0 or step < start_fraction * total_steps:
        return base
    t = min(step, total_steps)
    return end - (end - base) * (math.cos(math.pi * t / total_steps) + 1.0) / 2.0


def frozen_copy(module: nn.Module) -> nn.Module:
    """A deep copy that no optimiser step or gradient will touch."""
    clone = copy.deepcopy(module)
    for p in clone.parameters():
        p.requires_grad_(False)
    return clone


@torch.no_grad()
def ema_update(target: nn.Module, source: nn.Module, momentum: float, buffers: bool) -> None:
    """target ← momentum·target + (1 − momentum)·source, on parameters (and float buffers if asked).

    Uses the fused foreach kernels: one launch for all tensors instead of one per tensor."""
    t_params = [p for p in target.parameters()]
    s_params = [p.detach() for p in source.parameters()]
    torch._foreach_lerp_(t_params, s_params, 1.0 - momentum)
    if buffers:
        for tb, sb in zip(target.buffers(), source.buffers()):
            if tb.dtype.is_floating_point:
                tb.lerp_(sb, 1.0 - momentum)
            else:
                tb.copy_(sb)


def warmed_up_decay(decay: float, step: int) -> float:
    """min(decay, (1 + t) / (10 + t)): the decay at optimiser step t (0-based). A constant 0.999
    leaves 98 % of the random initialisation in the average after 20 steps, so a short run's EMA
    network scores at chance; with the warm-up it follows the online network early and reaches
    the full decay after 9 / (1 − decay) − 1 steps (8,990 for 0.999)."""
    return min(decay, (1.0 + step) / (10.0 + step))


class ModelEma(nn.Module):
    """The engine's EMA of the online network (parameters and buffers)."""

    def __init__(self, model: nn.Module, decay: float, warmup: bool = True):
        super().__init__()
        self.module = frozen_copy(model).eval()
        self.decay = decay
        self.warmup = warmup

    def update(self, model: nn.Module, step: int) -> None:
        decay = warmed_up_decay(self.decay, step) if self.warmup else self.decay
        ema_update(self.module, model, decay, buffers=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)
