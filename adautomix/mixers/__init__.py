"""Training methods: `create_method(name, model, num_classes, **options)`.

A plain table maps each method name to how it is built; no registry, no decorators. Input mixers
are functions wrapped by `InputMixMethod`; methods that need the network (ManifoldMix, PuzzleMix,
AutoMix, AdAutoMix) are `Method` subclasses."""

from __future__ import annotations

import functools
import inspect
from typing import Any

from torch import nn

from ..config import ConfigError
from .adautomix import AdAutoMix
from .automix import AutoMix
from .base import InputMixMethod, Method, Vanilla, soft_cross_entropy, soft_targets
from .cutmix import cutmix
from .fmix import fmix
from .manifoldmix import ManifoldMix
from .mixup import mixup
from .puzzlemix import PuzzleMix
from .resizemix import resizemix
from .saliencymix import saliencymix

# The paper's CIFAR-100 α for each input mixer (spec §10); override with method_args alpha=...
INPUT_MIXERS = {
    "mixup": (mixup, {"alpha": 1.0}),
    "cutmix": (cutmix, {"alpha": 0.2}),
    "saliencymix": (saliencymix, {"alpha": 0.2}),
    "fmix": (fmix, {"alpha": 0.2, "decay_power": 3.0}),
    "resizemix": (resizemix, {"alpha": 1.0, "scope": (0.1, 0.8)}),
}
METHOD_CLASSES: dict[str, type[Method]] = {
    "vanilla": Vanilla,
    "manifoldmix": ManifoldMix,
    "puzzlemix": PuzzleMix,
    "automix": AutoMix,
    "adautomix": AdAutoMix,
}


def _check_options(name: str, options: dict[str, Any], valid: set[str]) -> None:
    unknown = sorted(set(options) - valid)
    if unknown:
        raise ConfigError(
            f"method {name!r} has no option(s) {unknown}; valid: {', '.join(sorted(valid)) or 'none'}")


def method_defaults(name: str) -> dict[str, Any]:
    """The options a method takes, with their defaults (what `adautomix presets` prints)."""
    if name in INPUT_MIXERS:
        return dict(INPUT_MIXERS[name][1])
    cls = METHOD_CLASSES[name]
    params = inspect.signature(cls.__init__).parameters
    return {k: p.default for k, p in params.items()
            if k not in ("self", "model", "num_classes", "label_smoothing")
            and p.default is not inspect.Parameter.empty}


def resolved_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """Every option of method `name` with the value a run uses: `options` over the defaults."""
    if name not in INPUT_MIXERS and name not in METHOD_CLASSES:
        raise ConfigError(f"unknown method {name!r}; valid: {', '.join(available_methods())}")
    return {**method_defaults(name), **options}


def create_method(name: str, model: nn.Module, num_classes: int, label_smoothing: float = 0.0,
                  **options: Any) -> Method:
    if name in INPUT_MIXERS:
        fn, defaults = INPUT_MIXERS[name]
        _check_options(name, options, set(defaults))
        mix = functools.partial(fn, **{**defaults, **options})
        return InputMixMethod(name, mix, num_classes, label_smoothing)
    if name not in METHOD_CLASSES:
        raise ConfigError(f"unknown method {name!r}; valid: {', '.join(available_methods())}")
    cls = METHOD_CLASSES[name]
    _check_options(name, options, set(method_defaults(name)))
    params = inspect.signature(cls.__init__).parameters
    extra = {"model": model} if "model" in params else {}
    return cls(num_classes=num_classes, label_smoothing=label_smoothing, **extra, **options)


def available_methods() -> list[str]:
    return sorted({*INPUT_MIXERS, *METHOD_CLASSES})


__all__ = ["Method", "InputMixMethod", "create_method", "available_methods", "method_defaults",
           "resolved_options",
           "soft_cross_entropy", "soft_targets"]
