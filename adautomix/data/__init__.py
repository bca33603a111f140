"""The data layer: raw formats (sources), the prepared on-disk format (prepare) and the loaders
that feed the training device (loaders). See each module's docstring.

The loaders load on first use: a pipeline step that only versions data or reads an error class
should not pay for importing torch, torchvision and DALI (seconds here)."""

from adautomix.data.augment import Recipe
from adautomix.data.errors import DataError
from adautomix.data.prepare import Manifest, content_hash, ensure_dataset, load_manifest, prepare
from adautomix.data.prepare import verify
from adautomix.data.sources import RawDataset, read_source

__all__ = [
    "DataError",
    "Loader",
    "Manifest",
    "RawDataset",
    "Recipe",
    "build_loader",
    "content_hash",
    "ensure_dataset",
    "load_manifest",
    "prepare",
    "read_source",
    "verify",
]


def __getattr__(name: str):
    if name in ("Loader", "build_loader"):
        from adautomix.data import loaders

        return getattr(loaders, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
