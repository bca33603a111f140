"""AutoMix (Liu et al., ECCV 2022), the parent of AdAutoMix, and the machinery the two share.

Both learn the mixing (spec §1, §6): a mix block reads stage-3 features of an EMA ("k",
teacher) copy of the classifier and makes per-pixel masks; it is trained through the frozen EMA
network on one mixed batch, while the online ("q") network trains on a second, independently
drawn mixed batch whose masks are detached. Networks, as the official code names them:

    head_one_q   the model's own head (clean images)      head_mix_q   a second head (mixed images)
    net_k        EMA copy of the model, with head_one_k   head_mix_k   EMA copy of head_mix_q

The EMA covers parameters only; net_k runs in train mode and keeps its own BN statistics, and it
(with head_one_k) is the network whose accuracy is the headline.

The PixelMixBlock lives here, not in generator.py: it is AutoMix's alone, and generator.py is
the AdAutoMix block.
"""

from __future__ import annotations

from abc import abstractmethod

import contextlib
import math
from collections.abc import Iterable, Iterator, Sequence
from itertools import chain

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ConfigError
from ..engine.ema import cosine_momentum, ema_update, frozen_copy
from ..models.backbone import Backbone, linear_head
from .base import Method, soft_cross_entropy
from .generator import UPSAMPLING_MODES, init_mix_block

LossParts = Iterator[tuple[torch.Tensor, dict[str, torch.Tensor]]]


# --- sampling and mixing

def sample_beta(alpha: float, count: int) -> list[float]:
    """`count` i.i.d. Beta(α, α) draws on the host, from torch's global generator (one seed)."""
    concentration = torch.full((count,), float(alpha))
    return torch.distributions.Beta(concentration, concentration).sample().tolist()


def random_permutations(batch_size: int, count: int, device: torch.device) -> torch.Tensor:
    """B×count: column i is a uniform random permutation. Drawn on the device (argsort of uniform
    noise), so no host-to-device copy stalls the step."""
    return torch.rand(count, batch_size, device=device).argsort(dim=1).T


def pair_with_identity(batch_size: int, device: torch.device) -> torch.Tensor:
    """B×2 for two-image mixes: each image itself, then a random partner."""
    identity = torch.arange(batch_size, device=device).view(-1, 1)
    return torch.cat([identity, random_permutations(batch_size, 1, device)], dim=1)


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


# --- shared machinery

def check_backbone(model: nn.Module, feature_stage: int, method: str) -> None:
    if not isinstance(model, Backbone):
        raise ConfigError(
            f"{method} needs a Backbone (stem, stages, head) to read stage features, got "
            f"{type(model).__name__}; build the model with adautomix.models.create_model")
    if not 1 <= feature_stage <= model.num_stages:
        raise ConfigError(
            f"{method} reads the EMA network's stage-{feature_stage} features, but "
            f"{type(model).__name__} has stages 1..{model.num_stages}; set method_args "
            f"feature_stage to one of them")


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


class GradientBank:
    """Sums the parts of a step's loss, back-propagating each part as soon as it is added.

    One joint backward would keep every pass's activations alive at once (four networks' worth
    for AdAutoMix); back-propagating part by part frees each pass's graph before the next one is
    built. `total()` returns the summed value carrying a stand-in graph, Σ_p ⟨p, g_p⟩, whose
    gradient is exactly the banked g_p: the engine's single backward, loss scaling included, then
    leaves the same gradients as one joint backward would.

    Under fp16 autocast the parts are kept whole instead, so the engine's GradScaler protects
    their fp16 activation gradients from underflow (an unscaled early backward would not)."""

    def __init__(self, params: Iterable[nn.Parameter], release: bool = True):
        self.params = list(params)
        self.release = release
        self.grads: list[torch.Tensor | None] = [None] * len(self.params)
        self.parts: list[torch.Tensor] = []

    def add(self, loss: torch.Tensor) -> None:
        if not self.release:
            self.parts.append(loss)
            return
        grads = torch.autograd.grad(loss, self.params, allow_unused=True)
        for i, grad in enumerate(grads):
            if grad is not None:
                self.grads[i] = grad if self.grads[i] is None else self.grads[i].add_(grad)
        self.parts.append(loss.detach())

    def total(self) -> torch.Tensor:
        value = torch.stack(self.parts).sum()
        if not self.release:
            return value
        stand_in = sum((p * g).sum() for p, g in zip(self.params, self.grads) if g is not None)
        return value + (stand_in - stand_in.detach())


def fp16_autocast(device: torch.device) -> bool:
    return torch.is_autocast_enabled(device.type) and \
        torch.get_autocast_dtype(device.type) == torch.float16


class LearnedMixMethod(Method):
    """The EMA teacher, the mixed-image heads and the step skeleton of AutoMix and AdAutoMix.

    Subclasses yield their loss in parts (`loss_parts`), each with its own graph, in the official
    order of passes; the step back-propagates them one by one (GradientBank)."""

    min_batch_size = 2

    def __init__(self, model: nn.Module, num_classes: int, label_smoothing: float,
                 feature_stage: int, momentum: float, end_momentum: float, momentum_warmup: float):
        super().__init__(num_classes, label_smoothing)
        name = type(self).__name__
        check_backbone(model, feature_stage, name)
        if not 0.0 <= momentum <= end_momentum < 1.0:
            raise ConfigError(f"{name} needs 0 <= momentum <= end_momentum < 1, got "
                              f"momentum={momentum}, end_momentum={end_momentum}")
        if not 0.0 <= momentum_warmup <= 1.0:
            raise ConfigError(f"{name} momentum_warmup is a fraction of training in [0, 1], "
                              f"got {momentum_warmup}")
        self.feature_stage = feature_stage
        self.momentum = momentum
        self.end_momentum = end_momentum
        self.momentum_warmup = momentum_warmup
        self.head_mix_q = linear_head(model.num_features, num_classes)
        self.net_k = frozen_copy(model)
        self.head_mix_k = frozen_copy(self.head_mix_q)

    def teacher(self) -> nn.Module:
        return self.net_k

    def after_optimizer_step(self, model: nn.Module, step: int, total_steps: int) -> None:
        m = cosine_momentum(step, total_steps, self.momentum, self.end_momentum,
                            self.momentum_warmup)
        ema_update(self.net_k, model, m, buffers=False)
        ema_update(self.head_mix_k, self.head_mix_q, m, buffers=False)

    def feature_channels(self, model: Backbone) -> int:
        return model.stage_channels[self.feature_stage - 1]

    def training_step(self, model, images, labels, step):
        if images.shape[0] < self.min_batch_size:
            raise ConfigError(
                f"{type(self).__name__} mixes {self.min_batch_size} images per sample but got a "
                f"batch of {images.shape[0]}; use batch_size >= {self.min_batch_size}")
        self.net_k.train()  # the teacher computes features with batch statistics, as the official
        params = [p for p in chain(model.parameters(), self.parameters()) if p.requires_grad]
        bank = GradientBank(params, release=not fp16_autocast(images.device))
        logs: dict[str, torch.Tensor] = {}
        for loss, part_logs in self.loss_parts(model, images, labels, step):
            bank.add(loss)
            logs.update(part_logs)
        return bank.total(), logs

    @abstractmethod
    def loss_parts(self, model: Backbone, images: torch.Tensor, labels: torch.Tensor,
                   step: int) -> LossParts:
        """Yield (loss, logs) per pass; each loss's graph must be independent of the others'."""

    def mixed_logits(self, net: Backbone, head: nn.Linear, images: torch.Tensor) -> torch.Tensor:
        return head(net.pre_logits(net.features(images)))

    @torch.no_grad()
    def sample_grid(self, model, images, labels):
        with unchanged_buffers(self.net_k):
            self.net_k.train()
            perm, masks = self.sample_masks(images)
        rows = [(f"source {i + 1}", images[perm[:, i]]) for i in range(perm.shape[1])]
        rows += [(f"mask {i + 1}", masks[:, i:i + 1]) for i in range(perm.shape[1])]
        return rows + [("mixed", mix_images(images, perm, masks))]

    @abstractmethod
    def sample_masks(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B×N permutation, B×N×H×W masks) as the generator branch draws them."""


# --- AutoMix

class PixelMixBlock(nn.Module):
    """AutoMix's mix block for a pair (spec §6): one 1×1 conv, without activation, gives both
    queries (from x's features z) and keys (from the partner's z'); the value comes from z'.
    M' = sigmoid(upsample(softmax(q kᵀ / √d) v')) is the partner's mask, 1 − M' is x's."""

    def __init__(self, in_channels: int, reduction: int = 2, lam_concat: bool = False,
                 upsampling: str = "nearest"):
        super().__init__()
        if upsampling not in UPSAMPLING_MODES:
            raise ValueError(
                f"upsampling {upsampling!r} is not one of {', '.join(UPSAMPLING_MODES)}")
        self.lam_concat = lam_concat
        self.upsampling = upsampling
        self.dim = max(in_channels // reduction, 1)
        self.query = nn.Conv2d(in_channels + int(lam_concat), self.dim, 1)
        self.value = nn.Conv2d(in_channels + int(lam_concat), 1, 1)
        init_mix_block(self)

    def forward(self, features: torch.Tensor, partner: torch.Tensor, lam: float,
                size: tuple[int, int]) -> torch.Tensor:
        """B×C×h×w maps of x and of its partner -> B×2×H×W masks (x's, partner's)."""
        with torch.autocast(features.device.type, enabled=False):
            z, z_partner = features.float(), partner.float()
            b, _, h, w = z.shape
            if self.lam_concat:
                z = torch.cat([z, z.new_full((b, 1, h, w), lam)], dim=1)
                z_partner = torch.cat([z_partner, z.new_full((b, 1, h, w), 1.0 - lam)], dim=1)
            q = self.query(z).flatten(2).transpose(1, 2)                # B P d
            k = self.query(z_partner).flatten(2)                        # B d P
            v = self.value(z_partner).flatten(2).transpose(1, 2)        # B P 1
            attention = (q @ k / math.sqrt(self.dim)).softmax(dim=-1)
            logits = (attention @ v).view(b, 1, h, w)
            partner_mask = torch.sigmoid(F.interpolate(logits, size=size, mode=self.upsampling))
            return torch.cat([1.0 - partner_mask, partner_mask], dim=1)


class AutoMix(LearnedMixMethod):
    """AutoMix as configured in OpenMixup for CIFAR-100 (spec §6): pairs, α = 2, always cooperative
    (the mix block minimises the EMA network's mixup CE), an L1 mask-area loss with a margin."""

    name = "automix"

    def __init__(self, model: nn.Module, num_classes: int, label_smoothing: float = 0.0,
                 alpha: float = 2.0, lam_margin: float = 0.08, mask_loss_weight: float = 0.1,
                 mask_loss_margin: float = 0.1, lam_concat: bool = False, reduction: int = 2,
                 upsampling: str = "nearest", feature_stage: int = 3, momentum: float = 0.999,
                 end_momentum: float = 0.999999, momentum_warmup: float = 0.1,
                 skip_unused_stages: bool = False):
        """skip_unused_stages: end the clean EMA pass at the feature stage, as its later stages'
        output is unused. Not the official step: those stages' BN running statistics in the EMA
        network (which the headline evaluation reads) then follow the mixed batches alone."""
        super().__init__(model, num_classes, label_smoothing, feature_stage, momentum,
                         end_momentum, momentum_warmup)
        if alpha <= 0:
            raise ConfigError(f"AutoMix alpha must be > 0, got {alpha}")
        if not 0.0 <= lam_margin < 0.5:
            raise ConfigError(f"AutoMix lam_margin must be in [0, 0.5), got {lam_margin}")
        self.alpha = alpha
        self.lam_margin = lam_margin
        self.mask_loss_weight = mask_loss_weight
        self.mask_loss_margin = mask_loss_margin
        self.skip_unused_stages = skip_unused_stages
        self.mix_block = PixelMixBlock(self.feature_channels(model), reduction, lam_concat,
                                       upsampling)

    def loss_parts(self, model, images, labels, step):
        size = images.shape[-2:]
        lam_mb, lam_bb = sample_beta(self.alpha, 2)  # independent draws for the two branches
        perm_mb = pair_with_identity(images.shape[0], images.device)
        perm_bb = pair_with_identity(images.shape[0], images.device)
        targets = self.targets(labels)
        with torch.no_grad():
            # The official feature pass runs the whole network; the later stages are kept for
            # their effect on net_k's BN running statistics, which the headline evaluation uses.
            features = self.net_k.features(images, upto=self.feature_stage)
            if not self.skip_unused_stages:
                self.net_k.run_stages(features, self.feature_stage)

        # generator branch: trained through the frozen EMA network
        masks_mb = self.mix_block(features, features[perm_mb[:, 1]], lam_mb, size)
        mixed_mb = mix_images(images, perm_mb, masks_mb)
        logits_k = self.mixed_logits(self.net_k, self.head_mix_k, mixed_mb)
        loss_mix_k = soft_cross_entropy(logits_k, mix_targets(targets, perm_mb, (lam_mb, 1 - lam_mb)))
        mask_area = masks_mb[:, 1].mean()
        loss_mask = F.relu((1.0 - mask_area - lam_mb).abs() - self.mask_loss_margin)
        yield loss_mix_k + self.mask_loss_weight * loss_mask, {
            "loss_mix_k": loss_mix_k.detach(), "loss_mask": loss_mask.detach()}

        # classifier branch: clean CE, then CE on a second mixed batch with detached masks
        loss_one_q = soft_cross_entropy(model(images), targets)
        yield loss_one_q, {"loss_one_q": loss_one_q.detach()}

        lams_bb = (lam_bb, 1.0 - lam_bb)
        if self.lam_margin >= lam_bb or self.lam_margin >= 1.0 - lam_bb:
            masks_bb = constant_masks(lams_bb, masks_mb)  # plain MixUp
        else:
            with torch.no_grad():
                masks_bb = self.mix_block(features, features[perm_bb[:, 1]], lam_bb, size)
        logits_q = self.mixed_logits(model, self.head_mix_q, mix_images(images, perm_bb, masks_bb))
        loss_mix_q = soft_cross_entropy(logits_q, mix_targets(targets, perm_bb, lams_bb))
        yield loss_mix_q, {"loss_mix_q": loss_mix_q.detach()}

    def mix_block_parameters(self):
        return list(self.mix_block.parameters())

    def sample_masks(self, images):
        lam = sample_beta(self.alpha, 1)[0]
        perm = pair_with_identity(images.shape[0], images.device)
        features = self.net_k.features(images, upto=self.feature_stage)
        return perm, self.mix_block(features, features[perm[:, 1]], lam, images.shape[-2:])
