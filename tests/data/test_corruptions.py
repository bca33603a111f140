"""The 19 CIFAR-C corruptions on 1- and 3-channel images: shape, dtype and range kept, the image
changed, further from the clean image as the severity rises, reproducible under a seed."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from adautomix.data.corruptions import CORRUPTIONS, SEVERITIES, corrupt
from adautomix.data.errors import DataError

# CIFAR-C's own constants make five of them non-monotone in pixel distance (severity there means
# the accuracy drop the authors tuned, not distance): saturate first desaturates (0.3×, 0.1×) then
# oversaturates; elastic_transform trades a large affine warp at severity 1 for small local
# displacements at 5; glass_blur's severity 3 blurs more (which smooths its shuffle) and 4 shuffles
# twice with less blur; frost dims the image (keep 1 -> 0.75) as its ice grows; spatter is water
# at 1-3 and mud at 4-5.
NOT_MONOTONE = {"saturate", "elastic_transform", "glass_blur", "frost", "spatter"}


def smooth_images(channels: int, count: int = 6, size: int = 28) -> np.ndarray:
    """Low-frequency images spanning the pixel range, like photographs and unlike noise."""
    field = np.random.default_rng(channels).random((count, size, size, channels))
    field = ndimage.gaussian_filter(field, (0, 3, 3, 0))
    low, high = field.min(axis=(1, 2, 3), keepdims=True), field.max(axis=(1, 2, 3), keepdims=True)
    return (255 * (field - low) / (high - low)).astype(np.uint8)


@pytest.fixture(scope="module", params=[1, 3], ids=["grey", "rgb"])
def distances(request):
    """{corruption: [mean |corrupted - clean| at severities 1..5]}, and the images."""
    images = smooth_images(request.param)
    table = {}
    for name in CORRUPTIONS:
        row = []
        for severity in SEVERITIES:
            out = corrupt(images, name, severity)
            assert out.shape == images.shape and out.dtype == np.uint8, (name, severity)
            row.append(np.abs(out.astype(float) - images).mean())
        table[name] = row
    return images, table


def test_there_are_the_19_of_cifar_100_c():
    assert len(CORRUPTIONS) == 19
    assert {"gaussian_blur", "saturate", "spatter", "speckle_noise"} <= set(CORRUPTIONS)


def test_every_corruption_changes_the_image_at_its_worst(distances):
    _, table = distances
    unchanged = [name for name, row in table.items() if row[-1] == 0]
    assert not unchanged


def test_severity_5_is_further_from_clean_than_severity_1(distances):
    _, table = distances
    closer = [
        name for name, row in table.items() if name != "elastic_transform" and not row[4] > row[0]
    ]
    assert not closer


def test_distance_grows_with_severity_on_average(distances):
    """Strictly for the 14 meant to be monotone, and for the mean over all 19."""
    _, table = distances
    mean = np.mean([row for row in table.values()], axis=0)
    assert all(np.diff(mean) > 0), mean
    falling = {
        name: np.round(row, 1).tolist()
        for name, row in table.items()
        if name not in NOT_MONOTONE and not all(np.diff(row) > 0)
    }
    assert not falling


def test_a_seed_reproduces_a_corruption_and_another_seed_changes_it():
    images = smooth_images(3)
    for name in ("gaussian_noise", "glass_blur", "spatter", "fog", "elastic_transform"):
        np.testing.assert_array_equal(
            corrupt(images, name, 3, seed=1), corrupt(images, name, 3, seed=1)
        )
        assert not np.array_equal(
            corrupt(images, name, 3, seed=1), corrupt(images, name, 3, seed=2)
        )


def test_deterministic_corruptions_match_their_formula():
    """Contrast at severity 2: (x - image mean)·0.5 + mean, truncated to uint8."""
    images = smooth_images(3)
    x = images / 255.0
    mean = x.mean(axis=(1, 2), keepdims=True)
    expected = (np.clip((x - mean) * 0.5 + mean, 0, 1) * 255).astype(np.uint8)
    np.testing.assert_allclose(corrupt(images, "contrast", 2).astype(int), expected, atol=1)


@pytest.mark.parametrize(
    "name, severity, message",
    [
        ("fogg", 1, "unknown corruption(s) ['fogg']; valid: gaussian_noise"),
        ("fog", 0, "severity [0] outside 1-5"),
        ("fog", 6, "severity [6] outside 1-5"),
    ],
)
def test_bad_names_and_severities_are_refused(name, severity, message):
    with pytest.raises(DataError) as error:
        corrupt(smooth_images(1), name, severity)
    assert message in str(error.value)
