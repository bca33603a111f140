"""One forward pass over a loader, its logits handed to the metrics that accumulate them."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
from torch import nn


def logits_of(network: nn.Module, images: torch.Tensor, amp: bool = False) -> torch.Tensor:
    with torch.autocast(images.device.type, enabled=amp and images.device.type == "cuda"):
        return network(images)


def accumulate(network: nn.Module, loader: Iterable, trackers: Sequence,
               amp: bool = False, transform: Callable | None = None) -> None:
    """Feed every tracker's `update(logits, labels)` from one pass in inference mode, over the
    loader's images or `transform(images)` of them; the network is left in the mode it was in."""
    was_training = network.training
    network.eval()
    try:
        with torch.inference_mode():
            for images, labels in loader:
                logits = logits_of(network, transform(images) if transform else images, amp)
                for tracker in trackers:
                    tracker.update(logits, labels)
    finally:
        network.train(was_training)
