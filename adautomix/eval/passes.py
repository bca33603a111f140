"""One forward pass over a loader, its logits handed to the metrics that accumulate them."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn


def logits_of(network: nn.Module, images: torch.Tensor, amp: bool = False) -> torch.Tensor:
    with torch.autocast(images.device.type, enabled=amp and images.device.type == "cuda"):
        return network(images)


@contextmanager
def evaluating(network: nn.Module) -> Iterator[nn.Module]:
    """The network in eval mode for the block, then back in the mode it was in."""
    was_training = network.training
    network.eval()
    try:
        yield network
    finally:
        network.train(was_training)


def accumulate(network: nn.Module, loader: Iterable, trackers: Sequence,
               amp: bool = False, transform: Callable | None = None) -> None:
    """Feed every tracker's `update(logits, labels)` from one pass in inference mode, over the
    loader's images or `transform(images)` of them."""
    with evaluating(network), torch.inference_mode():
        for images, labels in loader:
            logits = logits_of(network, transform(images) if transform else images, amp)
            for tracker in trackers:
                tracker.update(logits, labels)
