"""The network as it is served: images in [0, 1] in, logits out.

Training normalises images in the loader, with constants that depend on the dataset or the
recipe; a model registry user should not have to know them. `NormalizedInput` carries them as
buffers, so the logged model takes raw [0, 1] images and its predictions match the training
run's evaluation."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class NormalizedInput(nn.Module):
    def __init__(self, network: nn.Module, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        if len(mean) != len(std) or not len(mean):
            raise ValueError(f"mean {list(mean)} and std {list(std)} need one value per channel")
        self.network = network
        self.register_buffer("mean", torch.tensor([float(m) for m in mean]).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor([float(s) for s in std]).view(1, -1, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.network((images - self.mean) / self.std)


def uses_torchvision(network: nn.Module) -> bool:
    """Whether unpickling the network needs torchvision (its modules come from there)."""
    return any(type(m).__module__.startswith("torchvision") for m in network.modules())
