"""Manifold Mixup (Verma et al., 2019): MixUp at a random depth of the network.

As in OpenMixup's CIFAR setting: λ ~ Beta(α, α) per batch and the mixing point is drawn
uniformly from `layers`: 0 mixes the input images, k ≥ 1 mixes the feature maps after stage k
(the Backbone's `features(x, upto=k)`), and the rest of the net continues from the mix
(`forward_from`). Labels are mixed with the same λ.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import Method, SampleGrid, soft_cross_entropy
from .sampling import mix_partner, sample_beta


def manifold_mix(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    alpha: float = 2.0,
    layers: tuple[int, ...] = (0, 1, 2),
):
    """Logits of the batch mixed at a random layer, and the mixed soft targets."""
    lam = sample_beta(alpha, 1)[0]
    layer = layers[int(torch.randint(len(layers), (1,)))]
    index = mix_partner(images.shape[0], images.device)
    if layer == 0:
        logits = model(images.mul(lam).add_(images[index], alpha=1.0 - lam))
    else:
        hidden = model.features(images, upto=layer)
        logits = model.forward_from(hidden.mul(lam).add_(hidden[index], alpha=1.0 - lam), layer)
    return logits, lam * targets + (1.0 - lam) * targets[index]


class ManifoldMix(Method):
    name = "manifoldmix"

    def __init__(
        self,
        model: nn.Module,
        num_classes: int,
        label_smoothing: float = 0.0,
        alpha: float = 2.0,
        layers: tuple[int, ...] = (0, 1, 2),
    ):
        super().__init__(num_classes, label_smoothing)
        layers = tuple(int(k) for k in layers)
        if not hasattr(model, "forward_from"):
            raise TypeError(
                f"manifoldmix mixes between stages, so it needs a Backbone (with "
                f"features/forward_from); got {type(model).__name__}"
            )
        if not layers or not all(0 <= k <= model.num_stages for k in layers):
            raise ValueError(
                f"manifoldmix layers must be in 0..{model.num_stages} "
                f"(0 is the input, k the output of stage k); got {layers}"
            )
        self.alpha = alpha
        self.layers = layers

    def training_step(self, model, images, labels, step):
        logits, targets = manifold_mix(model, images, self.targets(labels), self.alpha, self.layers)
        return soft_cross_entropy(logits, targets), {}

    @torch.no_grad()
    def sample_grid(self, model, images, labels):
        """Hidden mixes cannot be drawn; the row shows the input-layer mix at a fresh λ."""
        lam = sample_beta(self.alpha, 1)[0]
        index = mix_partner(images.shape[0], images.device)
        targets = self.targets(labels)
        return SampleGrid(
            [
                ("input", images),
                (
                    f"mixed at the input, λ={lam:.2f}",
                    images.mul(lam).add_(images[index], alpha=1.0 - lam),
                ),
            ],
            targets.mul(lam).add_(targets[index], alpha=1.0 - lam),
        )
