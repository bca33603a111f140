"""AdAutoMix's mask generator (spec §3): shapes, the per-pixel softmax, the near-uniform start,
the attention maths against a slot-by-slot reference, λ concatenation and the NaN fallback."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from adautomix.mixers.generator import MaskGenerator
from tests.mixers.mixer_helpers import perturb


def features(b=4, n=3, c=16, h=4, w=4, seed=0):
    return torch.randn(b, n, c, h, w, generator=torch.Generator().manual_seed(seed))


def reference_masks(generator, z, lams, size):
    """§3 written slot by slot: logits_i = Σ_{j≠i} q_i k_jᵀ / √d, softmax over key positions,
    m_i = A_i v_i (value from the query's own image), upsample, softmax over the N masks."""
    b, n, _, h, w = z.shape
    if generator.lam_concat:
        z = torch.cat([z, torch.stack([torch.full((b, 1, h, w), lam) for lam in lams], 1)], 2)
    q = [F.relu(generator.query[0](z[:, i])).flatten(2).transpose(1, 2) for i in range(n)]
    k = [F.relu(generator.key[0](z[:, i])).flatten(2) for i in range(n)]
    v = [generator.value(z[:, i]).flatten(2).transpose(1, 2) for i in range(n)]
    masks = []
    for i in range(n):
        logits = sum(q[i] @ k[j] for j in range(n) if j != i) / math.sqrt(generator.dim)
        masks.append((logits.softmax(dim=-1) @ v[i]).view(b, 1, h, w))
    masks = F.interpolate(torch.cat(masks, 1), size=size, mode=generator.upsampling)
    return masks.softmax(dim=1)


@pytest.mark.parametrize("n", [2, 3, 4])
@pytest.mark.parametrize("lam_concat", [False, True])
@pytest.mark.parametrize("upsampling", ["bilinear", "nearest"])
def test_masks_have_image_size_and_sum_to_one_per_pixel(n, lam_concat, upsampling):
    torch.manual_seed(0)
    generator = perturb(MaskGenerator(16, lam_concat=lam_concat, upsampling=upsampling))
    masks = generator(features(n=n), [1.0 / n] * n, (16, 16))
    assert masks.shape == (4, n, 16, 16)
    torch.testing.assert_close(masks.sum(dim=1), torch.ones(4, 16, 16))
    assert (masks > 0).all() and (masks < 1).all()
    assert masks.std() > 0.01  # trained weights give masks that differ, not a constant split


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("lam_concat", [False, True])
def test_attention_matches_the_slot_by_slot_definition(n, lam_concat):
    torch.manual_seed(0)
    generator = perturb(MaskGenerator(16, lam_concat=lam_concat))
    z = features(n=n)
    lams = [0.2, 0.8] if n == 2 else [0.5, 0.3, 0.2]
    expected = reference_masks(generator, z, lams, (16, 16))
    torch.testing.assert_close(generator(z, lams, (16, 16)), expected)


@pytest.mark.parametrize("n", [2, 3])
def test_fresh_generator_starts_near_an_equal_mix(n):
    torch.manual_seed(0)
    generator = MaskGenerator(16)
    z = features(n=n)
    assert (generator(z, [1.0 / n] * n, (16, 16)) - 1.0 / n).abs().max() < 0.01
    for conv in (generator.query[0], generator.key[0], generator.value):
        conv.reset_parameters()  # PyTorch's default init is far from equal
    assert (generator(z, [1.0 / n] * n, (16, 16)) - 1.0 / n).abs().max() > 0.03


def test_scale_follows_image_and_feature_sizes():
    """Fashion-MNIST: 28 px images, 7×7 stage-3 maps; any other size ratio works too."""
    generator = MaskGenerator(16)
    assert generator(features(h=7, w=7), [0.3, 0.3, 0.4], (28, 28)).shape == (4, 3, 28, 28)
    assert generator(features(h=5, w=5), [0.3, 0.3, 0.4], (28, 28)).shape == (4, 3, 28, 28)


def test_lambda_reaches_the_masks_only_with_lam_concat():
    torch.manual_seed(0)
    z = features(n=2)
    plain = perturb(MaskGenerator(16, lam_concat=False))
    torch.testing.assert_close(plain(z, [0.1, 0.9], (16, 16)), plain(z, [0.7, 0.3], (16, 16)))
    with_lam = perturb(MaskGenerator(16, lam_concat=True))
    assert not torch.allclose(with_lam(z, [0.1, 0.9], (16, 16)), with_lam(z, [0.7, 0.3], (16, 16)))


@pytest.mark.parametrize("n,expected_first", [(2, 0.0), (3, 1.0 / 3)])
def test_nan_features_fall_back_to_the_official_constants(n, expected_first):
    torch.manual_seed(0)
    generator = perturb(MaskGenerator(16))
    z = features(n=n)
    z[1] = float("nan")
    masks = generator(z, [1.0 / n] * n, (16, 16))
    # N = 2: pre-softmax 1e-4 and 1e4, so the partner takes the whole sample; N = 3: 0.3 each.
    torch.testing.assert_close(masks[1, 0], torch.full((16, 16), expected_first))
    assert torch.isfinite(masks).all()
    clean = generator(features(n=n), [1.0 / n] * n, (16, 16))
    torch.testing.assert_close(masks[[0, 2, 3]], clean[[0, 2, 3]])


def test_masks_stay_fp32_under_autocast():
    generator = MaskGenerator(16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        masks = generator(features().bfloat16(), [0.3, 0.3, 0.4], (16, 16))
    assert masks.dtype == torch.float32


def test_unknown_upsampling_is_refused():
    with pytest.raises(ValueError, match="upsampling 'bicubic'"):
        MaskGenerator(16, upsampling="bicubic")
