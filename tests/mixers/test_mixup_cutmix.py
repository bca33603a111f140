"""MixUp and CutMix against what they must do, read back from their outputs alone: each mixed
image is its own image and one partner's, the partners form a permutation (without fixed points
for CutMix), and the label weights are MixUp's λ, or for CutMix the area the clipped box really
covers, not the λ that was drawn."""

from __future__ import annotations

import torch

from adautomix.mixers.base import soft_targets
from adautomix.mixers.cutmix import cutmix, random_box
from adautomix.mixers.mixup import mixup

B, C, H, W = 6, 3, 12, 12


def inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(B, C, H, W, generator=g)  # continuous values: no two pixels agree
    labels = torch.arange(B) % 4
    return images, soft_targets(labels, 4), labels


def test_mixup_mixes_each_image_with_one_partner_of_a_permutation_at_one_lambda():
    for seed in range(5):
        images, targets, labels = inputs(seed)
        torch.manual_seed(seed)
        mixed, mixed_targets, masks = mixup(images, targets, alpha=1.0)
        lam = float(masks[0, 0, 0, 0])
        assert 0 < lam < 1 and torch.allclose(masks[:, 0], torch.full((B, H, W), lam))
        partners = []
        for i in range(B):
            residual = mixed[i] - lam * images[i]
            # the partner j is the image with residual = (1 - λ)·x_j
            j = int(((residual - (1 - lam) * images).flatten(1).abs().amax(1)).argmin())
            torch.testing.assert_close(mixed[i], lam * images[i] + (1 - lam) * images[j])
            torch.testing.assert_close(mixed_targets[i], lam * targets[i] + (1 - lam) * targets[j])
            partners.append(j)
        assert sorted(partners) == list(range(B))  # a permutation of the batch
        torch.testing.assert_close(mixed_targets.sum(1), torch.ones(B))


def test_random_box_is_clipped_to_the_image():
    torch.manual_seed(0)
    for _ in range(200):
        top, bottom, left, right = random_box(0.3, H, W)
        assert 0 <= top <= bottom <= H and 0 <= left <= right <= W


def test_cutmix_pastes_one_box_from_a_deranged_partner_and_weighs_labels_by_its_real_area():
    clipped = 0
    for seed in range(40):
        images, targets, _ = inputs(seed)
        torch.manual_seed(seed)
        mixed, mixed_targets, masks = cutmix(images, targets, alpha=1.0)
        changed = (mixed != images).any(dim=1)  # B×H×W: where a partner shows
        box = changed.any(dim=0)  # one box for the whole batch
        rows, cols = box.any(1).nonzero().flatten(), box.any(0).nonzero().flatten()
        if len(rows) == 0:
            continue  # a box of zero area: nothing pasted
        top, bottom, left, right = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
        assert box[top:bottom, left:right].all() and box.sum() == (bottom - top) * (right - left)
        partners = []
        for i in range(B):
            region = mixed[i, :, top:bottom, left:right]
            j = int(
                (images[:, :, top:bottom, left:right] - region).flatten(1).abs().amax(1).argmin()
            )
            assert torch.equal(region, images[j, :, top:bottom, left:right]) and j != i
            partners.append(j)
        assert sorted(partners) == list(range(B))
        area = (bottom - top) * (right - left) / (H * W)
        lam = 1 - area
        expected = lam * targets + (1 - lam) * targets[partners]
        torch.testing.assert_close(mixed_targets, expected)
        torch.testing.assert_close(masks[:, 1].mean((1, 2)), torch.full((B,), area))
        # a box cut by the border: its area is below the drawn side², the weights follow the area
        clipped += top == 0 or left == 0 or bottom == H or right == W
    assert clipped >= 3
