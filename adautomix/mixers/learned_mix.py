"""What AutoMix and AdAutoMix share (spec §1, §6): the EMA teacher, the mixed-image heads, the
N-way mixing of images and targets, and the step skeleton that back-propagates a loss part by
part (GradientBank).

Both learn the mixing: a mix block reads stage-3 features of an EMA ("k", teacher) copy of the
classifier and makes per-pixel masks; it is trained through the frozen EMA network on one mixed
batch, while the online ("q") network trains on a second, independently drawn mixed batch whose
masks are detached. Networks, as the official code names them:

    head_one_q   the model's own head (clean images)      head_mix_q   a second head (mixed images)
    net_k        EMA copy of the model, with head_one_k   head_mix_k   EMA copy of head_mix_q

The EMA covers parameters only; net_k runs in train mode and keeps its own BN statistics, and it
(with head_one_k) is the network whose accuracy is the headline.
"""

from __future__ import annotations

import contextlib
from abc import abstractmethod
from collections.abc import Iterator, Sequence
from itertools import chain

import torch
from torch import nn

from ..config import ConfigError
from ..ema import cosine_momentum, ema_update, frozen_copy
from ..models.backbone import Backbone, linear_head
from .base import Method, SampleGrid
from .gradient_bank import GradientBank, fp16_autocast

LossParts = Iterator[tuple[torch.Tensor, dict[str, torch.Tensor]]]


def mix_images(images: torch.Tensor, perm: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Σ_i images[perm[:, i]] ⊙ masks[:, i]: perm is B×N, masks B×N×H×W."""
    return (images[perm] * masks.unsqueeze(2).to(images.dtype)).sum(dim=1)


def mix_targets(targets: torch.Tensor, perm: torch.Tensor, lams: Sequence[float]) -> torch.Tensor:
    """Σ_i λ_i targets[perm[:, i]]: the label weights are the sampled λ, never the mask areas.
    Cross-entropy is linear in the target, so this equals the official Σ_i λ_i CE(p, y_i)."""
    return sum(lam * targets[perm[:, i]] for i, lam in enumerate(lams))


def constant_masks(lams: Sequence[float], like: torch.Tensor) -> torch.Tensor:
    """B×N×H×W masks equal to λ_i everywhere: plain (multi-)MixUp, the λ-margin fallback."""
    b, _, h, w = like.shape
    return torch.cat([like.new_full((b, 1, h, w), float(lam)) for lam in lams], dim=1)


def check_backbone(model: nn.Module, feature_stage: int, method: str) -> None:
    if not isinstance(model, Backbone):
        raise ConfigError(
            f"{method} needs a Backbone (stem, stages, head) to read stage features, got "
            f"{type(model).__name__}; build the model with adautomix.models.create_model"
        )
    if not 1 <= feature_stage <= model.num_stages:
        raise ConfigError(
            f"{method} reads the EMA network's stage-{feature_stage} features, but "
            f"{type(model).__name__} has stages 1..{model.num_stages}; set method_args "
            f"feature_stage to one of them"
        )


@contextlib.contextmanager
def unchanged_buffers(net: nn.Module) -> Iterator[None]:
    """Run a train-mode forward for show without moving the BN running statistics."""
    buffers = list(net.buffers())
    saved = [b.clone() for b in buffers]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in zip(buffers, saved):
                buffer.copy_(value)


class LearnedMixMethod(Method):
    """The EMA teacher, the mixed-image heads and the step skeleton of AutoMix and AdAutoMix.

    Subclasses yield their loss in parts (`loss_parts`), each with its own graph, in the official
    order of passes; the step back-propagates them one by one (GradientBank)."""

    min_batch_size = 2

    def __init__(
        self,
        model: nn.Module,
        num_classes: int,
        label_smoothing: float,
        feature_stage: int,
        teacher_momentum: float,
        end_momentum: float,
        momentum_warmup: float,
    ):
        super().__init__(num_classes, label_smoothing)
        name = type(self).__name__
        check_backbone(model, feature_stage, name)
        if not 0.0 <= teacher_momentum <= end_momentum < 1.0:
            raise ConfigError(
                f"{name} needs 0 <= teacher_momentum <= end_momentum < 1, got "
                f"teacher_momentum={teacher_momentum}, end_momentum={end_momentum}"
            )
        if not 0.0 <= momentum_warmup <= 1.0:
            raise ConfigError(
                f"{name} momentum_warmup is a fraction of training in [0, 1], got {momentum_warmup}"
            )
        self.feature_stage = feature_stage
        self.teacher_momentum = teacher_momentum
        self.end_momentum = end_momentum
        self.momentum_warmup = momentum_warmup
        self.head_mix_q = linear_head(model.num_features, num_classes)
        self.net_k = frozen_copy(model)
        self.head_mix_k = frozen_copy(self.head_mix_q)

    def teacher(self) -> nn.Module:
        return self.net_k

    def after_optimizer_step(self, model: nn.Module, step: int, total_steps: int) -> None:
        m = cosine_momentum(
            step, total_steps, self.teacher_momentum, self.end_momentum, self.momentum_warmup
        )
        ema_update(self.net_k, model, m, buffers=False)
        ema_update(self.head_mix_k, self.head_mix_q, m, buffers=False)

    def feature_channels(self, model: Backbone) -> int:
        return model.stage_channels[self.feature_stage - 1]

    def training_step(self, model, images, labels, step):
        if images.shape[0] < self.min_batch_size:
            raise ConfigError(
                f"{type(self).__name__} mixes {self.min_batch_size} images per sample but got a "
                f"batch of {images.shape[0]}; use batch_size >= {self.min_batch_size}"
            )
        self.net_k.train()  # the teacher computes features with batch statistics, as the official
        params = [p for p in chain(model.parameters(), self.parameters()) if p.requires_grad]
        bank = GradientBank(params, release=not fp16_autocast(images.device))
        logs: dict[str, torch.Tensor] = {}
        for loss, part_logs in self.loss_parts(model, images, labels, step):
            bank.add(loss)
            logs.update(part_logs)
        return bank.total(), logs

    @abstractmethod
    def loss_parts(
        self, model: Backbone, images: torch.Tensor, labels: torch.Tensor, step: int
    ) -> LossParts:
        """Yield (loss, logs) per pass; each loss's graph must be independent of the others'."""

    def mixed_logits(self, net: Backbone, head: nn.Linear, images: torch.Tensor) -> torch.Tensor:
        return head(net.pre_logits(net.features(images)))

    @torch.no_grad()
    def sample_grid(self, model, images, labels):
        with unchanged_buffers(self.net_k):
            self.net_k.train()
            perm, masks, lams = self.sample_masks(images)
        rows = [(f"source {i + 1}", images[perm[:, i]]) for i in range(perm.shape[1])]
        rows += [(f"mask {i + 1}", masks[:, i : i + 1]) for i in range(perm.shape[1])]
        return SampleGrid(
            rows + [("mixed", mix_images(images, perm, masks))],
            mix_targets(self.targets(labels), perm, lams),
        )

    @abstractmethod
    def sample_masks(
        self, images: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[float, ...]]:
        """(B×N permutation, B×N×H×W masks, the N label weights λ) as the generator branch
        draws them."""
