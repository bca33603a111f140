"""The one evaluation loop: a network's logits over a labelled loader, in eval mode and without
autograd. Every evaluation (the metrics table, the confusion matrix) consumes it."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
from torch import nn


def predictions(network: nn.Module, loader: Iterable, amp: bool = False
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(logits, labels) per batch; the network's train/eval mode is restored afterwards."""
    was_training = network.training
    network.eval()
    try:
        with torch.inference_mode():
            for images, labels in loader:
                with torch.autocast(images.device.type, enabled=amp and images.device.type == "cuda"):
                    logits = network(images)
                yield logits, labels
    finally:
        network.train(was_training)
