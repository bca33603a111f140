"""Exponential moving averages of a network's weights.

Two flavours are needed:
- the engine's generic EMA (timm's ModelEmaV2 style): parameters and BN buffers averaged, the
  copy only ever run in eval mode, a constant decay;
- AdAutoMix/AutoMix's teacher (spec §1, §2 step 9): parameters only, because the teacher runs in
  train mode and keeps its own BN running statistics, with a momentum that is constant for the
  first part of training and then follows a cosine in the absolute iteration count.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


def cosine_momentum(step: int, total_steps: int, base: float, end: float,
                    start_fraction: float = 0.1) -> float:
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


class ModelEma(nn.Module):
    """The engine's EMA of the online network (parameters and buffers, constant decay)."""

    def __init__(self, model: nn.Module, decay: float):
        super().__init__()
        self.module = frozen_copy(model).eval()
        self.decay = decay

    def update(self, model: nn.Module) -> None:
        ema_update(self.module, model, self.decay, buffers=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)
