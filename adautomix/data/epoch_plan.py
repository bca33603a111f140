"""The epoch plan every loader kind follows: which sample indices one rank reads in one epoch.

It works like DistributedSampler: the train split is shuffled by a permutation drawn from (seed,
epoch), every rank reads every world_size-th index of it (rank r from position r), and the partial
last (global) batch is dropped so that every rank runs the same number of steps; the test split is
read in order, split into contiguous per-rank chunks, and its last partial batch is kept.
Interleaving makes step s of N ranks with batch b read the very images of step s of one process with
batch N·b, so the number of ranks changes neither an epoch's global batches nor its length, and a
run resumes on another number of ranks in the same data stream. `subset` keeps the first N indices
of one fixed permutation (seed 0) whatever the run's seed, so runs with different seeds see the same
images. `pool` restricts the plan to some indices of the split (the training or the validation part
of a split: data/split.py); `subset` then picks from the pool. Augmentation follows (seed, epoch)
and each sample's place in the global epoch order: the memory and torch kinds draw the global
batch's (or epoch's) augmentation from `derived_seed(seed, epoch, 0)` on every rank and keep their
own places, so it does not depend on the number of ranks either (DALI's pipelines draw from
`derived_seed(seed, epoch, rank)`)."""

from __future__ import annotations

import numpy as np


def derived_seed(*parts: int) -> int:
    """A 63-bit seed mixed from several integers, so (seed, epoch) pairs never collide."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1, np.uint64)[0] >> 1)


def epoch_indices(
    count: int,
    *,
    train: bool,
    batch_size: int,
    seed: int,
    epoch: int,
    subset: int,
    rank: int,
    world_size: int,
    pool: np.ndarray | None = None,
) -> np.ndarray:
    """The sample indices one rank reads in one epoch, in reading order; `pool` (default: all
    `count`) is the set of indices it may read."""
    pool = np.arange(count) if pool is None else np.asarray(pool)
    if subset:
        pool = pool[np.random.default_rng(0).permutation(len(pool))[:subset]]
        if not train:
            pool = np.sort(pool)  # same images, read in order
    if train:
        order = pool[np.random.default_rng([seed, epoch]).permutation(len(pool))]
        share = len(order) // world_size
        usable = (share - share % batch_size) * world_size
        return order[:usable][rank::world_size]
    return pool[len(pool) * rank // world_size : len(pool) * (rank + 1) // world_size]
