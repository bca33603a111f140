"""Models: `create_model(name, num_classes, in_chans, pretrained, width) -> Backbone`.

Two plain tables map each name of `adautomix.config.MODELS` to its constructor: the small-image
networks trained from scratch (CIFAR stem, no max-pool) and torchvision's ImageNet networks, the
only ones with pretrained weights. `width` (0: the paper's) narrows or widens the CIFAR-stem ResNets
(WIDTH_MODELS), the only ones whose width is a free choice. The torchvision table names functions of
torchvision_nets, imported on first use: importing torchvision costs seconds (it loads
torch._dynamo), which a pipeline's parameter check on a CIFAR network should not pay."""

from __future__ import annotations

from importlib import import_module
from typing import Callable

from ..config import MODELS, ConfigError
from . import preact_resnet, resnet_cifar
from .backbone import Backbone, linear_head

SMALL_IMAGE_MODELS: dict[str, Callable[..., Backbone]] = {
    "resnet18": resnet_cifar.resnet18,
    "resnet34": resnet_cifar.resnet34,
    "resnet50": resnet_cifar.resnet50,
    "resnext50": resnet_cifar.resnext50_32x4d,
    "preactresnet18": preact_resnet.preact_resnet18,
}
WIDTH_MODELS = ("resnet18", "resnet34", "resnet50", "resnext50")
TORCHVISION_MODELS: dict[str, str] = {  # name -> function of adautomix.models.torchvision_nets
    "tv_resnet18": "tv_resnet18",
    "tv_resnet34": "tv_resnet34",
    "tv_resnet50": "tv_resnet50",
    "tv_resnet101": "tv_resnet101",
    "tv_resnext50": "tv_resnext50_32x4d",
    "swin_t": "swin_t",
    "convnext_t": "convnext_tiny",
}


def create_model(
    name: str, num_classes: int, in_chans: int = 3, pretrained: bool = False, width: int = 0
) -> Backbone:
    if width and name not in WIDTH_MODELS:
        raise ConfigError(
            f"model {name!r} has a fixed width; a width applies to "
            f"{', '.join(WIDTH_MODELS)} only (0 keeps the model's own)"
        )
    if name in TORCHVISION_MODELS:
        build = getattr(import_module(f"{__name__}.torchvision_nets"), TORCHVISION_MODELS[name])
        return build(num_classes, in_chans, pretrained)
    if name not in SMALL_IMAGE_MODELS:
        raise ConfigError(f"unknown model {name!r}; valid: {', '.join(MODELS)}")
    if pretrained:
        raise ConfigError(
            f"model {name!r} has no pretrained weights; use pretrained=False, or one of "
            f"{', '.join(TORCHVISION_MODELS)} for ImageNet weights"
        )
    if width:
        try:
            return SMALL_IMAGE_MODELS[name](num_classes, in_chans, width=width)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    return SMALL_IMAGE_MODELS[name](num_classes, in_chans)


# Sides tried, in order, to tell a user what a network that refuses their images would take.
PROBE_SIZES = (32, 64, 96, 128, 160, 224)


def check_input_size(network, name: str, in_chans: int, image_size: int) -> None:
    """Raise a ConfigError now if `network` cannot take in_chans x image_size x image_size
    images (ConvNeXt's stride-2 2x2 downsampling needs 32 px or more, say), rather than at the
    first training step. One image, eval mode, no gradient: no weight, statistic or random
    stream moves."""
    import torch

    def takes(size: int) -> bool:
        try:
            with torch.no_grad():
                network(torch.zeros(1, in_chans, size, size, device=device))
            return True
        except RuntimeError:
            return False

    device = next(network.parameters()).device
    was_training = network.training
    network.eval()
    try:
        if takes(image_size):
            return
        fits = next((s for s in PROBE_SIZES if s > image_size and takes(s)), None)
    finally:
        network.train(was_training)
    fix = f"set --image-size {fits} or more" if fits else "choose another --model"
    raise ConfigError(
        f"model {name!r} cannot take {image_size} px images; {fix} "
        "(small-image networks: " + ", ".join(SMALL_IMAGE_MODELS) + ")"
    )


__all__ = [
    "Backbone",
    "check_input_size",
    "create_model",
    "linear_head",
    "SMALL_IMAGE_MODELS",
    "TORCHVISION_MODELS",
    "WIDTH_MODELS",
]
