"""GradientBank: a loss summed from parts, each back-propagated as soon as it is added, so that
only one pass's activations are alive at a time (AutoMix and AdAutoMix run four networks a step)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


class GradientBank:
    """Sums the parts of a step's loss, back-propagating each part as soon as it is added.

    One joint backward would keep every pass's activations alive at once (four networks' worth
    for AdAutoMix); back-propagating part by part frees each pass's graph before the next one is
    built. `total()` returns the summed value carrying a stand-in graph, Σ_p ⟨p, g_p⟩, whose
    gradient is exactly the banked g_p: the engine's single backward, loss scaling included, then
    leaves the same gradients as one joint backward would.

    Under fp16 autocast the parts are kept whole instead, so the engine's GradScaler protects
    their fp16 activation gradients from underflow (an unscaled early backward would not)."""

    def __init__(self, params: Iterable[nn.Parameter], release: bool = True):
        self.params = list(params)
        self.release = release
        self.grads: list[torch.Tensor | None] = [None] * len(self.params)
        self.parts: list[torch.Tensor] = []

    def add(self, loss: torch.Tensor) -> None:
        if not self.release:
            self.parts.append(loss)
            return
        grads = torch.autograd.grad(loss, self.params, allow_unused=True)
        for i, grad in enumerate(grads):
            if grad is not None:
                self.grads[i] = grad if self.grads[i] is None else self.grads[i].add_(grad)
        self.parts.append(loss.detach())

    def total(self) -> torch.Tensor:
        value = torch.stack(self.parts).sum()
        if not self.release:
            return value
        stand_in = sum((p * g).sum() for p, g in zip(self.params, self.grads) if g is not None)
        return value + (stand_in - stand_in.detach())


def fp16_autocast(device: torch.device) -> bool:
    return (
        torch.is_autocast_enabled(device.type)
        and torch.get_autocast_dtype(device.type) == torch.float16
    )
