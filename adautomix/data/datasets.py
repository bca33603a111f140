"""torch Datasets over the two prepared formats, for the torch loader: items are
(index, augmentation seed) pairs, so a sample's augmentation depends on its seed alone."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import Dataset

from adautomix.data.prepare import Manifest, read_list
from adautomix.data.sources import decode_image

if TYPE_CHECKING:
    from torchvision.transforms import v2


def _augmented(transform: v2.Transform, image: torch.Tensor, seed: int) -> torch.Tensor:
    # v2 transforms draw from torch's global CPU generator; fork it so the sample's own seed
    # rules without disturbing the caller's stream (which matters when num_workers is 0).
    # torch.manual_seed would also seed every accelerator backend, at a millisecond a sample.
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        return transform(image)


class ArrayDataset(Dataset):
    def __init__(self, manifest: Manifest, split: str, transform: v2.Transform):
        # Memory-mapped: workers share the page cache instead of each holding a copy.
        self.images = np.load(manifest.root / f"{split}_images.npy", mmap_mode="r")
        self.labels = np.load(manifest.root / f"{split}_labels.npy")
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor, int]:
        index, seed = item
        image = torch.from_numpy(np.array(self.images[index])).permute(2, 0, 1)
        return _augmented(self.transform, image, seed), int(self.labels[index])


class FolderDataset(Dataset):
    def __init__(self, manifest: Manifest, split: str, transform: v2.Transform):
        files, self.labels = read_list(manifest.root, split)
        self.files = [str(manifest.root / path) for path in files]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor, int]:
        # PIL, as `prepare` checks the files: torchvision.io's decoders are deprecated (0.29)
        index, seed = item
        decoded = np.array(decode_image(Path(self.files[index])))  # H×W×3 uint8, a copy
        image = torch.from_numpy(decoded).permute(2, 0, 1)
        return _augmented(self.transform, image, seed), self.labels[index]
