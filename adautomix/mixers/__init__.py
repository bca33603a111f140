"""Training methods: `create_method(name, model, num_classes, **options)`.

A plain table maps each method name to how it is built; no registry, no decorators. Input mixers
are functions wrapped by `InputMixMethod`; methods that need the network (ManifoldMix, PuzzleMix,
AutoMix, AdAutoMix) are `Method` subclasses."""

from __future__ import annotations

import functools
import inspect
import math
from typing import Any

from torch import nn

from ..config import ConfigError
from ..optional import missing, require
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

# Methods that need an optional package (adautomix/optional.py), checked when one is created.
REQUIRED_MODULES = {"puzzlemix": "gco", "saliencymix": "cv2"}


# How a boolean option may be spelled on the command line (`-o is_random=no`).
BOOLEAN_SPELLINGS = {"true": True, "false": False, "yes": True, "no": False, "1": True, "0": False}


def _check_options(name: str, options: dict[str, Any], valid: set[str]) -> None:
    unknown = sorted(set(options) - valid)
    if unknown:
        raise ConfigError(
            f"method {name!r} has no option(s) {unknown}; "
            f"valid: {', '.join(sorted(valid)) or 'none'}"
        )


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _coerced(method: str, key: str, value: Any, default: Any) -> Any:
    """`value` as the type of the option's default, or a ConfigError saying what it takes."""
    where = f"method {method!r} option {key}"
    if isinstance(default, bool):
        spelled = str(value).lower() if isinstance(value, (str, int)) else None
        if isinstance(value, bool):
            return value
        if spelled in BOOLEAN_SPELLINGS and not isinstance(value, float):
            return BOOLEAN_SPELLINGS[spelled]
        raise ConfigError(
            f"{where} takes a boolean ({', '.join(BOOLEAN_SPELLINGS)}), got {value!r}"
        )
    if isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where} takes an integer, got {value!r}")
    if isinstance(default, float):
        if _is_number(value) and math.isfinite(value):
            return float(value)
        raise ConfigError(f"{where} takes a finite number, got {value!r}")
    if isinstance(default, tuple):
        element = int if all(isinstance(d, int) for d in default) else float
        if isinstance(value, (list, tuple)) and all(
            _is_number(v) and math.isfinite(v) and (element is float or isinstance(v, int))
            for v in value
        ):
            return [element(v) for v in value]
        kind = "integers" if element is int else "finite numbers"
        raise ConfigError(f"{where} takes a list of {kind} like {list(default)}, got {value!r}")
    if isinstance(default, str) and not isinstance(value, str):
        raise ConfigError(f"{where} takes a string, got {value!r}")
    return value


def checked_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """The options given, checked by name and type against the method's defaults (booleans
    from their spellings, ints widened to floats, lists of numbers), as the method will take
    them: what a config records, so that the records show what the run used. Only those given:
    `options_with_defaults` adds the rest."""
    if name not in INPUT_MIXERS and name not in METHOD_CLASSES:
        raise ConfigError(f"unknown method {name!r}; valid: {', '.join(available_methods())}")
    defaults = method_defaults(name)
    _check_options(name, options, set(defaults))
    return {k: _coerced(name, k, v, defaults[k]) for k, v in options.items()}


def method_defaults(name: str) -> dict[str, Any]:
    """The options a method takes, with their defaults (what `adautomix presets` prints)."""
    if name in INPUT_MIXERS:
        return dict(INPUT_MIXERS[name][1])
    cls = METHOD_CLASSES[name]
    params = inspect.signature(cls.__init__).parameters
    return {
        k: p.default
        for k, p in params.items()
        if k not in ("self", "model", "num_classes", "label_smoothing")
        and p.default is not inspect.Parameter.empty
    }


def options_with_defaults(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """Every option of method `name` with the value a run uses: `options` over the defaults
    (what a run logs as method.KEY)."""
    if name not in INPUT_MIXERS and name not in METHOD_CLASSES:
        raise ConfigError(f"unknown method {name!r}; valid: {', '.join(available_methods())}")
    return {**method_defaults(name), **options}


def create_method(
    name: str, model: nn.Module, num_classes: int, label_smoothing: float = 0.0, **options: Any
) -> Method:
    options = checked_options(name, options)
    if name in REQUIRED_MODULES:
        require(REQUIRED_MODULES[name], f"method {name!r}")
    if name in INPUT_MIXERS:
        fn, defaults = INPUT_MIXERS[name]
        if not options.get("alpha", 1.0) > 0:  # Beta(α, α) has no α <= 0
            raise ConfigError(f"method {name!r} option alpha must be > 0, got {options['alpha']}")
        mix = functools.partial(fn, **{**defaults, **options})
        return InputMixMethod(name, mix, num_classes, label_smoothing)
    cls = METHOD_CLASSES[name]
    params = inspect.signature(cls.__init__).parameters
    extra = {"model": model} if "model" in params else {}
    try:
        return cls(num_classes=num_classes, label_smoothing=label_smoothing, **extra, **options)
    except ConfigError:
        raise
    except ValueError as exc:  # a method's own range checks on its options
        raise ConfigError(f"method {name!r}: {exc}") from None


def available_methods() -> list[str]:
    return sorted({*INPUT_MIXERS, *METHOD_CLASSES})


def unavailable_reason(name: str) -> str | None:
    """Why method `name` cannot run here (an optional package it needs is missing), or None."""
    return missing(REQUIRED_MODULES[name], f"method {name!r}") if name in REQUIRED_MODULES else None


__all__ = [
    "Method",
    "InputMixMethod",
    "create_method",
    "checked_options",
    "available_methods",
    "method_defaults",
    "options_with_defaults",
    "unavailable_reason",
    "soft_cross_entropy",
    "soft_targets",
]
