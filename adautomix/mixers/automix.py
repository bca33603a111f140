"""AutoMix (Liu et al., ECCV 2022), the parent of AdAutoMix: pairs mixed by a learned
PixelMixBlock, always cooperative. What it shares with AdAutoMix (the EMA teacher, the heads,
the step skeleton) is in learned_mix.py.

The PixelMixBlock lives here, not in generator.py: it is AutoMix's alone, and generator.py is
the AdAutoMix block.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ConfigError
from .base import soft_cross_entropy
from .generator import MixBlock, init_mix_block
from .learned_mix import LearnedMixMethod, constant_masks, mix_images, mix_targets
from .sampling import pair_with_identity, sample_beta


class PixelMixBlock(MixBlock):
    """AutoMix's mix block for a pair (spec §6): one 1×1 conv, without activation, gives both
    queries (from x's features z) and keys (from the partner's z'); the value comes from z'.
    M' = sigmoid(upsample(softmax(q kᵀ / √d) v')) is the partner's mask, 1 − M' is x's."""

    def __init__(
        self,
        in_channels: int,
        reduction: int = 2,
        lam_concat: bool = False,
        upsampling: str = "nearest",
    ):
        super().__init__(in_channels, reduction, lam_concat, upsampling)
        self.query = nn.Conv2d(in_channels + int(lam_concat), self.dim, 1)
        self.value = nn.Conv2d(in_channels + int(lam_concat), 1, 1)
        init_mix_block(self)

    def forward(
        self, features: torch.Tensor, partner: torch.Tensor, lam: float, size: tuple[int, int]
    ) -> torch.Tensor:
        """B×C×h×w maps of x and of its partner -> B×2×H×W masks (x's, partner's)."""
        with torch.autocast(features.device.type, enabled=False):
            z, z_partner = features.float(), partner.float()
            b, _, h, w = z.shape
            if self.lam_concat:
                z = torch.cat([z, z.new_full((b, 1, h, w), lam)], dim=1)
                z_partner = torch.cat([z_partner, z.new_full((b, 1, h, w), 1.0 - lam)], dim=1)
            q = self.query(z).flatten(2).transpose(1, 2)  # B P d
            k = self.query(z_partner).flatten(2)  # B d P
            v = self.value(z_partner).flatten(2).transpose(1, 2)  # B P 1
            attention = (q @ k / math.sqrt(self.dim)).softmax(dim=-1)
            logits = (attention @ v).view(b, 1, h, w)
            partner_mask = torch.sigmoid(F.interpolate(logits, size=size, mode=self.upsampling))
            return torch.cat([1.0 - partner_mask, partner_mask], dim=1)


class AutoMix(LearnedMixMethod):
    """AutoMix as configured in OpenMixup for CIFAR-100 (spec §6): pairs, α = 2, always cooperative
    (the mix block minimises the EMA network's mixup CE), an L1 mask-area loss with a margin."""

    name = "automix"

    def __init__(
        self,
        model: nn.Module,
        num_classes: int,
        label_smoothing: float = 0.0,
        alpha: float = 2.0,
        lam_margin: float = 0.08,
        mask_loss_weight: float = 0.1,
        mask_loss_margin: float = 0.1,
        lam_concat: bool = False,
        reduction: int = 2,
        upsampling: str = "nearest",
        feature_stage: int = 3,
        teacher_momentum: float = 0.999,
        end_momentum: float = 0.999999,
        momentum_warmup: float = 0.1,
        skip_unused_stages: bool = False,
    ):
        """skip_unused_stages: end the clean EMA pass at the feature stage, as its later stages'
        output is unused. Not the official step: those stages' BN running statistics in the EMA
        network (which the headline evaluation reads) then follow the mixed batches alone."""
        super().__init__(
            model,
            num_classes,
            label_smoothing,
            feature_stage,
            teacher_momentum,
            end_momentum,
            momentum_warmup,
        )
        if alpha <= 0:
            raise ConfigError(f"AutoMix alpha must be > 0, got {alpha}")
        if not 0.0 <= lam_margin < 0.5:
            raise ConfigError(f"AutoMix lam_margin must be in [0, 0.5), got {lam_margin}")
        self.alpha = alpha
        self.lam_margin = lam_margin
        self.mask_loss_weight = mask_loss_weight
        self.mask_loss_margin = mask_loss_margin
        self.skip_unused_stages = skip_unused_stages
        self.mix_block = PixelMixBlock(
            self.feature_channels(model), reduction, lam_concat, upsampling
        )

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
        loss_mix_k = soft_cross_entropy(
            logits_k, mix_targets(targets, perm_mb, (lam_mb, 1 - lam_mb))
        )
        mask_area = masks_mb[:, 1].mean()
        loss_mask = F.relu((1.0 - mask_area - lam_mb).abs() - self.mask_loss_margin)
        yield (
            loss_mix_k + self.mask_loss_weight * loss_mask,
            {"loss_mix_k": loss_mix_k.detach(), "loss_mask": loss_mask.detach()},
        )

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
        masks = self.mix_block(features, features[perm[:, 1]], lam, images.shape[-2:])
        return perm, masks, (lam, 1.0 - lam)
