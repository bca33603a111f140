"""The validation split: disjoint from the training images, stratified, a function of its seed."""

from __future__ import annotations

import numpy as np
import pytest

from adautomix.data.errors import DataError
from adautomix.data.split import class_quotas, holdout_split


def unbalanced_labels() -> np.ndarray:
    # 3 classes of 500, 300 and 200 images, shuffled so position says nothing about class
    labels = np.repeat([0, 1, 2], [500, 300, 200])
    return np.random.default_rng(7).permutation(labels)


def test_the_split_is_disjoint_from_train_and_covers_every_image():
    labels = unbalanced_labels()
    train, val = holdout_split(labels, 100, seed=0)
    assert len(val) == 100 and len(train) == 900
    assert not set(train) & set(val)
    assert sorted([*train, *val]) == list(range(1000))


def test_every_class_keeps_its_share():
    labels = unbalanced_labels()
    _, val = holdout_split(labels, 100, seed=0)
    assert np.bincount(labels[val]).tolist() == [50, 30, 20]  # 50 %, 30 %, 20 % of 100


def test_balanced_classes_get_equal_quotas():
    labels = np.tile(np.arange(10), 600)  # Fashion-MNIST's shape: 10 classes of 600
    _, val = holdout_split(labels, 5000, seed=3)
    assert np.bincount(labels[val]).tolist() == [500] * 10


def test_quotas_sum_to_the_size_and_stay_within_one_of_the_exact_share():
    counts = np.array([7, 13, 29, 51])
    for size in (1, 9, 33, 99):
        quotas = class_quotas(counts, size)
        exact = counts * size / counts.sum()
        assert quotas.sum() == size
        assert np.all(np.abs(quotas - exact) < 1)


def test_the_split_is_a_function_of_its_seed():
    labels = unbalanced_labels()
    first = holdout_split(labels, 100, seed=0)[1]
    assert np.array_equal(first, holdout_split(labels, 100, seed=0)[1])
    assert not np.array_equal(first, holdout_split(labels, 100, seed=1)[1])


@pytest.mark.parametrize("size", [0, 1000, 1200])
def test_a_size_that_leaves_no_split_is_named(size):
    with pytest.raises(DataError, match="val_size"):
        holdout_split(unbalanced_labels(), size)
