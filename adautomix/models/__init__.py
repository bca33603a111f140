"""Models: `create_model(name, num_classes, in_chans, pretrained) -> Backbone`.

Two plain tables map each name of `adautomix.config.MODELS` to its constructor: the small-image
networks trained from scratch (CIFAR stem, no max-pool) and torchvision's ImageNet networks, the
only ones with pretrained weights."""

from __future__ import annotations

from typing import Callable

from ..config import MODELS, ConfigError
from . import preact_resnet, resnet_cifar, torchvision_nets
from .backbone import Backbone, linear_head

SMALL_IMAGE_MODELS: dict[str, Callable[..., Backbone]] = {
    "resnet18": resnet_cifar.resnet18,
    "resnet34": resnet_cifar.resnet34,
    "resnet50": resnet_cifar.resnet50,
    "resnext50": resnet_cifar.resnext50_32x4d,
    "preactresnet18": preact_resnet.preact_resnet18,
}
TORCHVISION_MODELS: dict[str, Callable[..., Backbone]] = {
    "tv_resnet18": torchvision_nets.tv_resnet18,
    "tv_resnet34": torchvision_nets.tv_resnet34,
    "tv_resnet50": torchvision_nets.tv_resnet50,
    "tv_resnet101": torchvision_nets.tv_resnet101,
    "tv_resnext50": torchvision_nets.tv_resnext50_32x4d,
    "swin_t": torchvision_nets.swin_t,
    "convnext_t": torchvision_nets.convnext_tiny,
}


def create_model(name: str, num_classes: int, in_chans: int = 3,
                 pretrained: bool = False) -> Backbone:
    if name in TORCHVISION_MODELS:
        return TORCHVISION_MODELS[name](num_classes, in_chans, pretrained)
    if name not in SMALL_IMAGE_MODELS:
        raise ConfigError(f"unknown model {name!r}; valid: {', '.join(MODELS)}")
    if pretrained:
        raise ConfigError(
            f"model {name!r} has no pretrained weights; use pretrained=False, or one of "
            f"{', '.join(TORCHVISION_MODELS)} for ImageNet weights")
    return SMALL_IMAGE_MODELS[name](num_classes, in_chans)


__all__ = ["Backbone", "create_model", "linear_head", "SMALL_IMAGE_MODELS", "TORCHVISION_MODELS"]
