"""AutoMix (spec §6) and the machinery it shares with AdAutoMix: the pixel mix block, gradient
routing, the always-cooperative generator loss, the mask loss, the λ margin, and the gradient
bank that back-propagates a step part by part."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import adautomix.mixers.automix as automix_module
import adautomix.mixers.learned_mix as learned_mix_module
from adautomix.config import ConfigError
from adautomix.mixers.adautomix import AdAutoMix
from adautomix.mixers.automix import AutoMix, PixelMixBlock
from adautomix.mixers.sampling import sample_beta
from tests.mixers.mixer_helpers import batch, perturb
from tests.mixers.mixer_helpers import setup as build


def setup(cls=AutoMix, seed=0, **options):
    return build(cls, seed, **options)


def feature_pair(seed=0, c=16, h=4):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(4, c, h, h, generator=g), torch.randn(4, c, h, h, generator=g)


@pytest.mark.parametrize("lam_concat", [False, True])
def test_pixel_mix_block_matches_its_definition(lam_concat):
    """One shared conv for q (from x) and k (from the partner), the value from the partner,
    softmax over key positions, upsampling, then a sigmoid for the partner's mask."""
    block = PixelMixBlock(16, lam_concat=lam_concat, upsampling="nearest")
    perturb(block)
    z, z_partner = feature_pair()
    lam = 0.3
    masks = block(z, z_partner, lam, (16, 16))
    assert masks.shape == (4, 2, 16, 16)
    torch.testing.assert_close(masks.sum(dim=1), torch.ones(4, 16, 16))

    if lam_concat:
        z = torch.cat([z, torch.full((4, 1, 4, 4), lam)], 1)
        z_partner = torch.cat([z_partner, torch.full((4, 1, 4, 4), 1 - lam)], 1)
    q = block.query(z).flatten(2).transpose(1, 2)
    k = block.query(z_partner).flatten(2)
    v = block.value(z_partner).flatten(2).transpose(1, 2)
    m = ((q @ k / math.sqrt(block.dim)).softmax(-1) @ v).view(4, 1, 4, 4)
    partner = torch.sigmoid(F.interpolate(m, size=(16, 16), mode="nearest"))
    torch.testing.assert_close(masks[:, 1:], partner)


def test_fresh_pixel_mix_block_starts_at_half_and_half():
    masks = PixelMixBlock(16)(*feature_pair(), 0.5, (16, 16))
    assert (masks - 0.5).abs().max() < 0.01


def test_generator_and_classifier_gradients_stay_on_their_side():
    model, method = setup()
    block = list(method.mix_block.parameters())
    online = list(model.parameters()) + list(method.head_mix_q.parameters())
    parts = [loss for loss, _ in method.loss_parts(model, *batch(), step=0)]
    assert len(parts) == 3  # generator; clean and mixed for the classifier
    grads = torch.autograd.grad(parts[0], block + online, allow_unused=True)
    assert all(g is not None for g in grads[: len(block)])
    assert all(g is None for g in grads[len(block) :])
    for part in parts[1:]:
        grads = torch.autograd.grad(part, block + online, allow_unused=True)
        assert all(g is None for g in grads[: len(block)])


def test_generator_is_always_cooperative_with_the_mask_loss():
    model, method = setup()
    images, labels = batch()
    for step in range(2):
        loss, logs = next(method.loss_parts(model, images, labels, step))
        torch.testing.assert_close(loss.detach(), logs["loss_mix_k"] + 0.1 * logs["loss_mask"])


@pytest.mark.parametrize("lam_mb,expected", [(0.9, 0.3), (0.45, 0.0)])
def test_mask_loss_is_the_l1_area_gap_beyond_the_margin(monkeypatch, lam_mb, expected):
    """A fresh block gives x a mask of ≈0.5: the loss is max(|0.5 − λ| − 0.1, 0)."""
    model, method = setup()
    monkeypatch.setattr(automix_module, "sample_beta", lambda alpha, count: [lam_mb, 0.5])
    _, logs = next(method.loss_parts(model, *batch(), step=0))
    assert float(logs["loss_mask"]) == pytest.approx(expected, abs=0.01)


@pytest.mark.parametrize("lam_bb,constant", [(0.05, True), (0.95, True), (0.5, False)])
def test_lambda_margin_gives_the_classifier_plain_mixup(monkeypatch, lam_bb, constant):
    model, method = setup()
    perturb(method.mix_block)
    monkeypatch.setattr(automix_module, "sample_beta", lambda alpha, count: [0.5, lam_bb])
    seen = []
    mix = automix_module.mix_images
    monkeypatch.setattr(
        automix_module,
        "mix_images",
        lambda images, perm, masks: seen.append(masks) or mix(images, perm, masks),
    )
    for _ in method.loss_parts(model, *batch(), step=0):
        pass
    classifier_masks = seen[1]
    is_constant = bool(
        (classifier_masks[:, 0] == lam_bb).all() and (classifier_masks[:, 1] == 1 - lam_bb).all()
    )
    assert is_constant == constant


@pytest.mark.parametrize("cls", [AutoMix, AdAutoMix])
def test_part_by_part_backward_equals_one_joint_backward(monkeypatch, cls):
    def step(release):
        model, method = setup(cls)
        monkeypatch.setattr(learned_mix_module, "fp16_autocast", lambda device: not release)
        torch.manual_seed(1)
        loss, _ = method.training_step(model, *batch(), step=0)
        loss.backward()
        named = list(model.named_parameters()) + list(method.named_parameters())
        return loss.detach(), {name: p.grad for name, p in named if p.requires_grad}

    banked_loss, banked = step(release=True)
    joint_loss, joint = step(release=False)
    torch.testing.assert_close(banked_loss, joint_loss)
    assert banked.keys() == joint.keys()
    for name, grad in joint.items():
        torch.testing.assert_close(banked[name], grad, rtol=1e-5, atol=1e-6, msg=name)


def test_sample_grid_shows_both_sources_their_masks_and_the_mix():
    model, method = setup()
    images, labels = batch()
    grid = method.sample_grid(model, images, labels)
    assert [t for t, _ in grid.rows] == ["source 1", "source 2", "mask 1", "mask 2", "mixed"]
    # each column is trained towards λ of its own class and 1 - λ of its partner's, with the λ the
    # mix block was given (not the mask areas), re-drawn here from the same seed
    torch.manual_seed(3)
    grid = method.sample_grid(model, images, labels)
    torch.manual_seed(3)
    (lam,) = sample_beta(method.alpha, 1)
    partner = torch.tensor(
        [int((images == s).flatten(1).all(1).nonzero()[0]) for s in grid.rows[1][1]]
    )
    expected = (
        lam * F.one_hot(labels, 10).float() + (1 - lam) * F.one_hot(labels[partner], 10).float()
    )
    torch.testing.assert_close(grid.targets, expected)


def test_bad_configs_say_what_to_change(tiny_backbone):
    with pytest.raises(ConfigError, match="stage-0 features.*feature_stage"):
        AutoMix(tiny_backbone, 10, feature_stage=0)
    with pytest.raises(ConfigError, match="alpha must be > 0"):
        AutoMix(tiny_backbone, 10, alpha=0.0)
    with pytest.raises(ConfigError, match="momentum <= end_momentum"):
        AutoMix(tiny_backbone, 10, teacher_momentum=0.9999, end_momentum=0.999)
    method = AutoMix(tiny_backbone, 10)
    with pytest.raises(ConfigError, match="batch of 1"):
        method.training_step(tiny_backbone, *batch(size=1), step=0)


def test_skipping_unused_stages_changes_only_the_ema_networks_late_bn_statistics():
    def one_step(**options):
        model, method = setup(**options)
        images, labels = batch()
        torch.manual_seed(3)
        loss, _ = method.training_step(model, images, labels, step=0)
        return loss.detach().item(), method.net_k

    full_loss, full = one_step()
    skipped_loss, skipped = one_step(skip_unused_stages=True)
    assert skipped_loss == full_loss
    # the official step updates stage 4's BN in the clean pass and the mixed pass, the option in
    # the mixed pass only; stage 3 and earlier see both passes either way
    assert int(full.stages[3][1].num_batches_tracked) == 2
    assert int(skipped.stages[3][1].num_batches_tracked) == 1
    assert (
        int(full.stages[2][1].num_batches_tracked)
        == int(skipped.stages[2][1].num_batches_tracked)
        == 2
    )
