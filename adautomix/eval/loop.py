"""The one evaluation loop: a network's logits over a labelled loader, in eval mode and without
autograd. Every evaluation (the metrics table, the confusion matrix, each corrupted set) consumes
it; FGSM and occlusion, which change the input first, share its eval-mode and autocast helpers."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from ..precision import autocast


@contextmanager
def evaluating(network: nn.Module) -> Iterator[nn.Module]:
    """The network in eval mode for the block, then back in the mode it was in."""
    was_training = network.training
    network.eval()
    try:
        yield network
    finally:
        network.train(was_training)


def logits_of(network: nn.Module, images: torch.Tensor, precision: str = "fp32") -> torch.Tensor:
    """The network's logits, its forward pass autocast to `precision` (adautomix/precision.py)."""
    with autocast(precision, images.device.type):
        return network(images)


def predictions(
    network: nn.Module, loader: Iterable, precision: str = "fp32"
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(logits, labels) per batch, left on the device (no host sync here: the metrics keep
    their sums there and read them once, at the end); the network's train/eval mode is restored
    afterwards."""
    with evaluating(network), torch.inference_mode():
        for images, labels in loader:
            yield logits_of(network, images, precision), labels


def first_images(loader, images: int):
    """A loader over the first `images` images of `loader`'s split (its subset's, when that is
    smaller), in the split's order, with its recipe and normalisation: the fixed subset a costly
    protocol is measured on. `images` 0 keeps `loader` itself."""
    import dataclasses

    from ..config import ConfigError
    from ..data import build_loader

    if not images:
        return loader
    if not hasattr(loader, "manifest"):
        raise ConfigError(
            "a metric's images option reads the loader's split again: give it a loader made "
            "by adautomix.data.build_loader"
        )
    recipe = dataclasses.replace(loader.recipe, mean=tuple(loader.mean), std=tuple(loader.std))
    return build_loader(
        loader.manifest,
        loader.split,
        batch_size=loader.batch_size,
        train=False,
        kind="memory",
        device=loader.device,
        subset=min(images, loader.subset or images),
        recipe=recipe,
        rank=loader.rank,
        world_size=loader.world_size,
        pool=loader.pool,
    )


def check_images(images) -> int:
    """A metric's `images` option: a count >= 0 (0: every image of the split)."""
    from ..config import ConfigError

    if isinstance(images, bool) or not isinstance(images, int) or images < 0:
        raise ConfigError(
            f"a metric's images option is a count of test images >= 0 (0: all), got {images!r}"
        )
    return images
