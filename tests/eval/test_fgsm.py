"""FGSM: the paper's arithmetic on a hand-built case, the pixel-space variant's, and a step that
raises the loss of a trained small model."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from adautomix.config import ConfigError
from adautomix.eval import evaluate
from adautomix.eval.fgsm import FGSM, fgsm_gradient, fgsm_perturb
from tests.tiny_backbone import TinyBackbone

EPS = 8 / 255


def test_the_paper_variant_steps_in_normalised_space_and_clamps_to_0_1():
    x = torch.tensor([-0.5, 0.2, 0.99, 1.3]).view(1, 4, 1, 1)
    gradient = torch.tensor([1.0, -2.0, 0.5, -1.0]).view(1, 4, 1, 1)
    mean, std = torch.full((1, 4, 1, 1), 0.5), torch.full((1, 4, 1, 1), 0.25)
    moved = fgsm_perturb(x, gradient, EPS, mean, std, "paper").flatten()
    # -0.5 + 8/255 is still negative -> 0; 0.2 - 8/255; 0.99 + 8/255 > 1 -> 1; 1.3 - 8/255 > 1 -> 1
    expected = torch.tensor([0.0, 0.2 - 8 / 255, 1.0, 1.0])
    torch.testing.assert_close(moved, expected)


def test_the_standard_variant_steps_eps_in_pixels_and_clamps_pixels():
    x = torch.tensor([-0.5, 0.2, 1.95]).view(1, 3, 1, 1)  # pixels 0.375, 0.55, 0.9875
    gradient = torch.tensor([1.0, -1.0, 1.0]).view(1, 3, 1, 1)
    mean, std = torch.full((1, 3, 1, 1), 0.5), torch.full((1, 3, 1, 1), 0.25)
    moved = fgsm_perturb(x, gradient, EPS, mean, std, "standard").flatten()
    # an ε-pixel step is ε/std in normalised units; 0.9875 + ε > 1 is clamped to pixel 1 = 2.0
    expected = torch.tensor([-0.5 + EPS / 0.25, 0.2 - EPS / 0.25, 2.0])
    torch.testing.assert_close(moved, expected)


def trained_model():
    """A tiny CNN taught which half of a 16 px image is brighter (60 steps)."""
    torch.manual_seed(0)
    images = torch.rand(256, 1, 16, 16)
    images[:128, :, :, :8] += 0.3
    images[128:, :, :, 8:] += 0.3
    images = (images.clamp(0, 1) - 0.5) / 0.5
    labels = torch.cat([torch.zeros(128), torch.ones(128)]).long()
    model = TinyBackbone(num_classes=2, in_chans=1)
    optimiser = torch.optim.Adam(model.parameters(), 3e-3)
    for _ in range(60):
        batch = torch.randint(0, 256, (32,))
        loss = F.cross_entropy(model(images[batch]), labels[batch])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return model.eval(), images, labels


def test_a_step_raises_the_loss_of_a_trained_model_and_its_error():
    model, images, labels = trained_model()
    mean, std = torch.full((1, 1, 1, 1), 0.5), torch.full((1, 1, 1, 1), 0.5)
    with torch.no_grad():
        clean = F.cross_entropy(model(images), labels)
    assert clean < 0.5  # it learned
    before = [p.grad.clone() for p in model.parameters()]
    gradient = fgsm_gradient(model, images, labels)
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), before))
    for variant in ("standard", "paper"):
        with torch.no_grad():
            attacked = F.cross_entropy(
                model(fgsm_perturb(images, gradient, EPS, mean, std, variant)), labels
            )
        assert attacked > clean, variant
    loader = [(images[i : i + 64], labels[i : i + 64]) for i in range(0, 256, 64)]
    # a larger step than the paper's, so that this confident model gets some wrong
    values = evaluate(model, loader, ["top1", FGSM(0.2, mean=[0.5], std=[0.5])])
    assert values["fgsm_error"] > 100 - values["top1"]
    assert not model.training


@pytest.mark.parametrize("epsilon", [0, -0.1, float("nan"), float("inf")])
def test_an_epsilon_that_is_not_positive_and_finite_is_refused(epsilon):
    with pytest.raises(ConfigError, match="fgsm epsilon"):
        FGSM(epsilon)
