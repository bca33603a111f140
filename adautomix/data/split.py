"""The validation split: images of the training split held out to select checkpoints on.

The paper reports the median test top-1 of the last epochs and has no validation split; picking a
checkpoint or a champion by test accuracy would tune on the test set. `holdout_split(labels,
size, seed)` carves `size` images out of a training split, stratified (each class keeps its share,
to within one image) and drawn from `seed` alone, so every run of a comparison, whatever its own
seed, selects on the same images and never trains on them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from adautomix.data.errors import DataError
from adautomix.data.prepare import Manifest

# The validation split is the same for every run (as `subset` is): runs that differ by their
# seed should differ in training, not in what they are judged on.
SPLIT_SEED = 0


def check_subset(subset: int, available: int, where: str, held_out: bool = False) -> None:
    """A DataError unless `subset` images (0: all) fit in the `available` ones of `where`
    (NAME/SPLIT; `held_out`: what the validation split left of it)."""
    if subset > available:
        raise DataError(
            f"subset {subset} is larger than the {available} images of {where}"
            f"{' left after the validation split' if held_out else ''}; lower it or use 0 for all"
        )


def class_quotas(counts: np.ndarray, size: int) -> np.ndarray:
    """How many images of each class a stratified sample of `size` takes: the proportional share
    rounded down, the remainder going to the classes with the largest fractional parts (ties to
    the lower class index), so the quotas sum to `size` exactly and no class is off by one more
    than rounding forces."""
    exact = counts * size / counts.sum()
    quotas = np.floor(exact).astype(np.int64)
    remainder = size - int(quotas.sum())
    order = np.lexsort((np.arange(len(counts)), -(exact - quotas)))
    quotas[order[:remainder]] += 1
    return quotas


def holdout_split(
    labels: np.ndarray, size: int, seed: int = SPLIT_SEED
) -> tuple[np.ndarray, np.ndarray]:
    """(train_indices, val_indices), both sorted, disjoint, together every index of `labels`;
    `val_indices` holds `size` images drawn per class by class_quotas."""
    labels = np.asarray(labels)
    if not 0 < size < len(labels):
        raise DataError(
            f"a validation split of {size} images needs 0 < size < {len(labels)} "
            "(the training split's size); lower val_size or use 0 for none"
        )
    classes, counts = np.unique(labels, return_counts=True)
    rng = np.random.default_rng(seed)
    held = []
    for cls, quota in zip(classes, class_quotas(counts, size)):
        members = np.flatnonzero(labels == cls)
        held.append(rng.choice(members, size=quota, replace=False))
    val = np.sort(np.concatenate(held))
    train = np.setdiff1d(np.arange(len(labels)), val, assume_unique=True)
    return train, val


def split_labels(manifest: Manifest, split: str) -> np.ndarray:
    """The labels of a prepared split, in index order, without loading its images."""
    root = Path(manifest.root)
    if manifest.format == "array":
        return np.load(root / f"{split}_labels.npy")
    lines = (root / f"{split}_list.txt").read_text().splitlines()
    return np.array([int(line.rsplit(" ", 1)[1]) for line in lines], dtype=np.int64)
