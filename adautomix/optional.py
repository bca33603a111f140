"""Packages that only one method or tool needs, imported where it is used, so that a machine
without one still runs everything else: gco-wrapper (PuzzleMix's graph cut; no wheel for Python
3.12, so it builds from source there) and OpenCV (SaliencyMix's saliency, the generated CIFAR-C
corruptions). NVIDIA DALI, the third, has its own check (data/dali.py). tests/test_optional.py
runs the package with all three hidden."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import InputError

# module -> (the distribution that provides it, how to get it)
PACKAGES = {
    "gco": (
        "gco-wrapper",
        "pip install gco-wrapper (from source where it has no wheel, e.g. "
        "Python 3.12: it needs a C++ compiler and Cython)",
    ),
    "cv2": (
        "opencv-contrib-python-headless",
        "pip install opencv-contrib-python-headless (the contrib build: it has the "
        "saliency module)",
    ),
}


class MissingPackage(InputError):
    """An optional package that what was asked for needs is not installed; names it and the fix."""


def require(module: str, needed_for: str) -> ModuleType:
    """The module, or a MissingPackage naming its package, what needs it and how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        package, fix = PACKAGES.get(module, (module, f"pip install {module}"))
        raise MissingPackage(
            f"{needed_for} needs the package {package}, which does not import "
            f"here ({exc}); {fix}, or choose something else"
        ) from None


def missing(module: str, needed_for: str) -> str | None:
    """Why `needed_for` cannot run here (the MissingPackage line), or None when it can."""
    try:
        require(module, needed_for)
    except MissingPackage as exc:
        return str(exc)
    return None


class LazyModule:
    """Stands for a module at the top of a file and imports it on first use, so that importing
    the file never needs it: `cv2 = LazyModule("cv2", "method saliencymix")`."""

    def __init__(self, module: str, needed_for: str):
        self._module, self._needed_for = module, needed_for

    def __getattr__(self, name: str):
        return getattr(require(self._module, self._needed_for), name)
