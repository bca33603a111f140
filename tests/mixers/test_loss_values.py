"""AdAutoMix's and AutoMix's losses against values computed here, independently, from spec §2
and §6.

Where mistakes would show: the EMA teacher is perturbed away from the online network (its
backbone, its clean head and its mixed head all differ from theirs), and the mix block is pushed
far from its near-uniform init, so masks are not 1/N. A swapped q/k network, a swapped head, a
wrong slot order or a wrong weight then changes the numbers. The random draws (N, λ,
permutations) are fixed by hand, so the expected values need nothing from the code under test but
the networks' forward passes. Each expected loss is rebuilt the official way: hard-label
cross-entropy per source weighted by λ, the sources' clean logits from N separate teacher passes,
and the masked sum written per slot."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from adautomix.mixers.adautomix import AdAutoMix
from adautomix.mixers.automix import AutoMix
from tests.mixers.mixer_helpers import batch, perturb, setup

BETA = 0.3


def perturbed(cls, **options):
    """A model and method whose teacher, heads and mix block all differ from each other."""
    model, method = setup(cls, **options)
    perturb(method.net_k, seed=11, scale=0.2)
    perturb(method.head_mix_k, seed=12, scale=0.3)
    perturb(method.head_mix_q, seed=13, scale=0.3)
    mix_block = method.generator if cls is AdAutoMix else method.mix_block
    perturb(mix_block, seed=14, scale=2.0)
    return model, method


def teacher_logits(net, head, images):
    return head(net.pre_logits(net.features(images)))


def weighted_ce(logits, labels, perm, lams):
    """Σ_i λ_i · CE(logits, y[perm_i]): the official mixup loss, hard labels, batch mean."""
    return sum(lam * F.cross_entropy(logits, labels[perm[:, i]]) for i, lam in enumerate(lams))


def masked_sum(images, perm, masks):
    """Σ_i x[perm_i] ⊙ M_i, one slot at a time."""
    return sum(images[perm[:, i]] * masks[:, i : i + 1] for i in range(perm.shape[1]))


def expected_adautomix(model, method, images, labels, step, n, lams_mb, perm_mb, lams_bb, perm_bb):
    """Every loss part of spec §2 steps 4-8, on copies, so the method's state is untouched."""
    model, net_k = copy.deepcopy(model).train(), copy.deepcopy(method.net_k).train()
    head_mix_k, head_mix_q = method.head_mix_k, method.head_mix_q
    generator, size = method.generator, images.shape[-2:]
    with torch.no_grad():
        features = net_k.features(images, upto=3)
        masks_mb = generator(features[perm_mb], lams_mb, size)
        mixed_k = teacher_logits(net_k, head_mix_k, masked_sum(images, perm_mb, masks_mb))
        sources = [teacher_logits(net_k, head_mix_k, images[perm_mb[:, i]]) for i in range(n)]
        masks_bb = generator(features[perm_bb], lams_bb, size)
        assert (masks_mb - 1 / n).abs().max() > 0.2, "the masks must be far from uniform"
        loss_mix_k = weighted_ce(mixed_k, labels, perm_mb, lams_mb)
        cos_sim = sum(
            lam * F.cosine_similarity(mixed_k, s, dim=1) for lam, s in zip(lams_mb, sources)
        ).mean()
        adversarial = step % 2 == 0
        loss_gen = -BETA * loss_mix_k + (1 - BETA) * cos_sim if adversarial else loss_mix_k
        loss_one_q = F.cross_entropy(model(images), labels)
        mixed_q = teacher_logits(model, head_mix_q, masked_sum(images, perm_bb, masks_bb))
        loss_mix_q = weighted_ce(mixed_q, labels, perm_bb, lams_bb)
        parts = {
            "loss_mix_k": loss_mix_k,
            "cos_sim": cos_sim,
            "loss_one_q": loss_one_q,
            "loss_mix_q": loss_mix_q,
        }
        clean = loss_one_q
        if n >= 3:
            linear = sum(lam * images[perm_bb[:, i]] for i, lam in enumerate(lams_bb))
            parts["loss_lin_q"] = weighted_ce(
                teacher_logits(model, head_mix_q, linear), labels, perm_bb, lams_bb
            )
            clean = 0.5 * loss_one_q + 0.5 * parts["loss_lin_q"]
    return parts, loss_mix_q + clean + loss_gen


def fixed_draws(n: int, batch_size: int):
    """λ that no margin rule touches; permutations with no identity slot for N ≥ 3."""
    g = torch.Generator().manual_seed(3)
    perm = lambda: torch.randperm(batch_size, generator=g)  # noqa: E731
    if n == 2:
        identity = torch.arange(batch_size)
        return (
            2,
            (0.3, 0.7),
            torch.stack([identity, perm()], 1),
            (0.6, 0.4),
            torch.stack([identity, perm()], 1),
        )
    lams = (0.5, 0.3, 0.2)
    return (
        3,
        lams,
        torch.stack([perm() for _ in range(3)], 1),
        lams,
        torch.stack([perm() for _ in range(3)], 1),
    )


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("step", [0, 1], ids=["adversarial", "cooperative"])
def test_adautomix_loss_parts_and_total_equal_their_definitions(monkeypatch, n, step):
    model, method = perturbed(AdAutoMix, mix_samples=n, beta=BETA)
    images, labels = batch()
    draws = fixed_draws(n, images.shape[0])
    monkeypatch.setattr(method, "draw", lambda batch_size, device: draws)
    expected, total = expected_adautomix(model, method, images, labels, step, *draws)

    loss, logs = method.training_step(model, images, labels, step)
    assert set(logs) == set(expected)
    for name, value in expected.items():
        torch.testing.assert_close(logs[name], value, rtol=1e-5, atol=1e-6, msg=name)
    torch.testing.assert_close(loss.detach(), total, rtol=1e-5, atol=1e-6)


def test_the_teacher_is_what_the_generator_branch_reads(monkeypatch):
    """The expected values above would not notice a swapped network if teacher and online network
    agreed: they must disagree by far more than the tolerance."""
    model, method = perturbed(AdAutoMix, mix_samples=3)
    images, _ = batch()
    for net in (model, method.net_k):
        net.train()
    gap = (
        (
            teacher_logits(method.net_k, method.head_mix_k, images)
            - teacher_logits(model, method.head_mix_q, images)
        )
        .abs()
        .max()
    )
    assert gap > 0.1
    assert (method.head_mix_k.weight - method.head_mix_q.weight).abs().max() > 0.1
    assert (method.net_k.head.weight - model.head.weight).abs().max() > 0.1


def expected_automix(model, method, images, labels, lam_mb, perm_mb, lam_bb, perm_bb):
    """Spec §6: the mix block's mixup CE through the teacher plus the L1 mask-area loss beyond
    its margin; the classifier's clean CE plus the mixup CE on the detached-mask batch."""
    model, net_k = copy.deepcopy(model).train(), copy.deepcopy(method.net_k).train()
    block, size = method.mix_block, images.shape[-2:]
    with torch.no_grad():
        features = net_k.features(images, upto=3)
        masks_mb = block(features, features[perm_mb[:, 1]], lam_mb, size)
        masks_bb = block(features, features[perm_bb[:, 1]], lam_bb, size)
        assert (masks_mb - 0.5).abs().max() > 0.2, "the masks must be far from half and half"
        mixed_k = teacher_logits(net_k, method.head_mix_k, masked_sum(images, perm_mb, masks_mb))
        loss_mix_k = weighted_ce(mixed_k, labels, perm_mb, (lam_mb, 1 - lam_mb))
        # the partner's mask should cover 1 - λ of the image, within the margin
        area_gap = (1 - masks_mb[:, 1].mean() - lam_mb).abs()
        loss_mask = torch.clamp(area_gap - 0.1, min=0)
        loss_one_q = F.cross_entropy(model(images), labels)
        mixed_q = teacher_logits(model, method.head_mix_q, masked_sum(images, perm_bb, masks_bb))
        loss_mix_q = weighted_ce(mixed_q, labels, perm_bb, (lam_bb, 1 - lam_bb))
    parts = {
        "loss_mix_k": loss_mix_k,
        "loss_mask": loss_mask,
        "loss_one_q": loss_one_q,
        "loss_mix_q": loss_mix_q,
    }
    return parts, loss_mix_k + 0.1 * loss_mask + loss_one_q + loss_mix_q


@pytest.mark.parametrize("step", [0, 1])
def test_automix_loss_parts_and_total_equal_their_definitions(monkeypatch, step):
    """AutoMix is cooperative on every step: the two steps give the same formula."""
    import adautomix.mixers.automix as automix_module

    model, method = perturbed(AutoMix)
    images, labels = batch()
    _, lam_mb, perm_mb, lam_bb, perm_bb = fixed_draws(2, images.shape[0])
    lam_mb, lam_bb = 0.2, 0.6  # an area gap beyond the margin, so the mask loss is not 0
    perms = iter([perm_mb, perm_bb])
    monkeypatch.setattr(automix_module, "sample_beta", lambda alpha, count: [lam_mb, lam_bb])
    monkeypatch.setattr(automix_module, "pair_with_identity", lambda b, device: next(perms))
    expected, total = expected_automix(
        model, method, images, labels, lam_mb, perm_mb, lam_bb, perm_bb
    )

    loss, logs = method.training_step(model, images, labels, step)
    assert set(logs) == set(expected) and expected["loss_mask"] > 0
    for name, value in expected.items():
        torch.testing.assert_close(logs[name], value, rtol=1e-5, atol=1e-6, msg=name)
    torch.testing.assert_close(loss.detach(), total, rtol=1e-5, atol=1e-6)
