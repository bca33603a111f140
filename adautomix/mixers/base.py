"""The Method interface: a training method owns a whole training step.

AdAutoMix needs several networks and several passes per step, so the engine does not mix a batch
and compute a loss itself; it calls `method.training_step(model, images, labels, step)` and
back-propagates the loss it returns. Targets are always soft: a (batch, classes) probability
tensor, so two-image and N-image mixes share one loss.

The plain input mixers (MixUp, CutMix, FMix, ...) are functions
`mix(images, targets) -> (images, targets, masks)` wrapped by `InputMixMethod`.
A method's extra networks (generator, EMA teacher, second head) are its own submodules, so the
checkpoint and the optimiser find them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

# A mixing function: (images, soft targets) -> (mixed images, mixed soft targets, masks or None).
# masks, when given, are (B, N, H, W) per-pixel weights of each source image, for visualisation.
MixFn = Callable[
    [torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]
]


def soft_targets(labels: torch.Tensor, num_classes: int, smoothing: float = 0.0) -> torch.Tensor:
    """One-hot targets, optionally label-smoothed; rows sum to one."""
    off = smoothing / num_classes
    targets = torch.full((labels.shape[0], num_classes), off, device=labels.device)
    return targets.scatter_(1, labels.view(-1, 1), 1.0 - smoothing + off)


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Batch-mean cross-entropy against probability targets (equals CE for one-hot targets)."""
    return -(targets * F.log_softmax(logits.float(), dim=1)).sum(dim=1).mean()


class Method(nn.Module, ABC):
    """Base class. Subclasses implement `training_step`; the rest has sensible defaults."""

    name = "base"

    def __init__(self, num_classes: int, label_smoothing: float = 0.0):
        super().__init__()
        self.num_classes = num_classes
        self.label_smoothing = label_smoothing

    def targets(self, labels: torch.Tensor) -> torch.Tensor:
        return soft_targets(labels, self.num_classes, self.label_smoothing)

    @abstractmethod
    def training_step(
        self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, step: int
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(loss to back-propagate, logs of detached scalar tensors) for one batch."""

    def after_optimizer_step(self, model: nn.Module, step: int, total_steps: int) -> None:
        """Called after each optimiser step (AdAutoMix updates its EMA teacher here)."""

    def mix_block_parameters(self) -> list[nn.Parameter]:
        """The learned mixing network's parameters, which recipes may train at their own lr."""
        return []

    def teacher(self) -> nn.Module | None:
        """An EMA network the method keeps itself (images -> logits), or None.

        When a method has one, it is the network whose accuracy is the headline (as in the paper)
        and the engine keeps no EMA of its own."""
        return None

    @torch.no_grad()
    def sample_grid(
        self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor
    ) -> SampleGrid:
        """What the method trains on, drawn as it draws a training batch; logged to MLflow as a
        picture (visualize.sample_figure)."""
        return SampleGrid([("input", images)], self.targets(labels))


@dataclass
class SampleGrid:
    """Rows of (title, tensor): images B×C×H×W in the loader's normalised space, or masks B×1×H×W
    of per-pixel weights in [0, 1] under a title that starts with "mask"; and the soft targets
    (B×classes) the last row, the mixed images, is trained towards."""

    rows: list[tuple[str, torch.Tensor]]
    targets: torch.Tensor | None = None


class Vanilla(Method):
    name = "vanilla"

    def training_step(self, model, images, labels, step):
        loss = soft_cross_entropy(model(images), self.targets(labels))
        return loss, {}


class InputMixMethod(Method):
    """Mixes the input batch with a mixing function, then trains on soft targets."""

    def __init__(self, name: str, mix: MixFn, num_classes: int, label_smoothing: float = 0.0):
        super().__init__(num_classes, label_smoothing)
        self.name = name
        self.mix = mix

    def training_step(self, model, images, labels, step):
        mixed, targets, _ = self.mix(images, self.targets(labels))
        return soft_cross_entropy(model(mixed), targets), {}

    @torch.no_grad()
    def sample_grid(self, model, images, labels):
        mixed, targets, masks = self.mix(images, self.targets(labels))
        rows = [("input", images)]
        if masks is not None:
            rows += [(f"mask {i}", masks[:, i : i + 1]) for i in range(masks.shape[1])]
        return SampleGrid(rows + [("mixed", mixed)], targets)
