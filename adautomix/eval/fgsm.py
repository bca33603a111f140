"""FGSM error: top-1 error (%) on images moved one signed-gradient step up the loss.

Two variants from one gradient (of the summed cross-entropy with respect to the normalised
input, the network in eval mode):
- `fgsm_error`, standard: the step ε is in pixel units ([0, 1] images), and the moved image is
  clamped to the valid pixel range before it is normalised again;
- `fgsm_error_paper`, as the paper's code (spec §7.3): x_adv = clamp(x + clamp(ε·sign(g), −ε, ε),
  0, 1) on the *normalised* x, so the step is ε·std in pixel units and every value below the mean
  is cut to 0. Its numbers are comparable with the paper's only because it keeps both oddities.
The sign of the gradient is the same in both spaces (normalisation divides by a positive std)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ConfigError
from .accuracy import summed_over_ranks
from .loop import check_images, evaluating, first_images, logits_of

VARIANTS = ("standard", "paper")


def fgsm_gradient(
    network: nn.Module, images: torch.Tensor, labels: torch.Tensor, precision: str = "fp32"
) -> torch.Tensor:
    """d(summed cross-entropy)/d(images); the parameters' .grad are left untouched."""
    images = images.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        loss = F.cross_entropy(
            logits_of(network, images, precision).float(), labels, reduction="sum"
        )
        (gradient,) = torch.autograd.grad(loss, images)
    return gradient


def fgsm_perturb(
    images: torch.Tensor,
    gradient: torch.Tensor,
    epsilon: float,
    mean: torch.Tensor,
    std: torch.Tensor,
    variant: str,
) -> torch.Tensor:
    """Normalised images after one FGSM step of `variant`; mean and std broadcast over N×C×H×W."""
    step = epsilon * gradient.sign()
    if variant == "paper":
        return (images + step.clamp(-epsilon, epsilon)).clamp(0, 1)
    pixels = images * std + mean
    return ((pixels + step).clamp(0, 1) - mean) / std


class FGSM:
    name = "fgsm"

    def __init__(
        self,
        epsilon: float = 8 / 255,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        images: int = 0,
    ):
        """`images`: measure on the first N images of the split (0: all of them)."""
        if (
            isinstance(epsilon, bool)
            or not isinstance(epsilon, (int, float))
            or not math.isfinite(epsilon)
            or epsilon <= 0
        ):
            raise ConfigError(
                f"fgsm epsilon must be a finite number > 0, got {epsilon!r} "
                "(8/255 = 0.0314 is the paper's)"
            )
        self.epsilon = float(epsilon)
        self.mean, self.std = mean, std
        self.images = check_images(images)

    def _constants(self, loader, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        mean = self.mean if self.mean is not None else getattr(loader, "mean", None)
        std = self.std if self.std is not None else getattr(loader, "std", None)
        if mean is None or std is None:
            raise ConfigError(
                "fgsm needs the normalisation constants: a loader with mean and "
                "std, or FGSM(mean=..., std=...)"
            )
        shape = (1, -1, 1, 1)
        return (
            torch.tensor(mean, device=device).view(shape),
            torch.tensor(std, device=device).view(shape),
        )

    def run(
        self, network: nn.Module, loader: Iterable, precision: str = "fp32", sharded: bool = False
    ) -> dict[str, float]:
        wrong = {variant: None for variant in VARIANTS}
        count = 0
        loader = first_images(loader, self.images)
        with evaluating(network):
            for images, labels in loader:
                mean, std = self._constants(loader, images.device)
                gradient = fgsm_gradient(network, images, labels, precision)
                with torch.inference_mode():
                    for variant in VARIANTS:
                        moved = fgsm_perturb(images, gradient, self.epsilon, mean, std, variant)
                        miss = (logits_of(network, moved, precision).argmax(1) != labels).sum()
                        wrong[variant] = miss if wrong[variant] is None else wrong[variant] + miss
                count += labels.shape[0]
        if not count:
            raise ValueError("fgsm got no batches")
        if sharded:  # every call sums this rank's count afresh: each returns the global one
            wrong, counts = zip(*(summed_over_ranks(wrong[v], count) for v in VARIANTS))
            wrong, count = dict(zip(VARIANTS, wrong)), counts[0]
        return {
            "fgsm_error": 100 * float(wrong["standard"]) / count,
            "fgsm_error_paper": 100 * float(wrong["paper"]) / count,
        }
