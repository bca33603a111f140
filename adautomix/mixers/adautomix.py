"""AdAutoMix (Qin, Jin et al., ICLR 2024): AutoMix with an adversarial generator (spec §2).

One step, in the official order of passes:
1. N = mix_samples (or uniform in {2..N} with is_random); λ from Beta(α, α): for N ≥ 3 one
   normalised vector shared by both branches, for N = 2 independent draws per branch. Separate
   permutations per branch (for N = 2 the first image is x itself).
2. The EMA network on the clean batch: its stage-3 map feeds the generator, its head_mix_k logits
   serve the cosine term.
3. The generator makes masks for both branches: the generator branch's stay in the graph, the
   classifier branch's are detached and fall back to linear mixing when λ₁ is within lam_margin
   of 0 or 1.
4. Generator loss through the frozen EMA network: adversarial on even steps,
   −β·CE_k + (1−β)·S, cooperative (+CE_k) on odd steps. S is the λ-weighted cosine between the
   mixed logits and each source's clean logits.
5. Classifier loss: CE on the mixed batch + CE on the clean batch (for N ≥ 3, 0.5·clean CE +
   0.5·CE on the linear N-way mix).

The official code runs the EMA network N more times on permuted copies of the clean batch for the
cosine term. In train mode BN statistics do not depend on the order of the batch, so those logits
are the clean logits of step 2, permuted: this class reuses them. Those N passes also moved the
EMA network's BN running statistics (the ones the headline evaluation uses) N more times toward
the clean batch's statistics; that update is replayed arithmetically, so the running statistics
match the official ones too.

Doubts the spec flags are options, defaulting to the official code: `maximise_cosine` flips the
sign of S on adversarial steps (the paper's stated intent), `lam_margin_rule="openmixup"` uses
the OpenMixup port's λ-margin test (which degrades the classifier's input to linear mixup on
almost every step).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ConfigError
from ..models.backbone import running_stat_batch_norms
from .base import soft_cross_entropy
from .generator import MaskGenerator
from .learned_mix import LearnedMixMethod, constant_masks, mix_images, mix_targets
from .sampling import pair_with_identity, random_permutations, sample_beta

LAM_MARGIN_RULES = ("official", "openmixup")


def batch_norms(net: nn.Module) -> tuple[list[nn.Module], float]:
    """The BN layers that keep running statistics, and their (common) momentum."""
    layers = running_stat_batch_norms(net)
    momenta = {m.momentum for m in layers}
    if None in momenta or len(momenta) > 1:
        raise ConfigError(
            f"AdAutoMix replays BN running-statistic updates and needs one fixed momentum for "
            f"every BatchNorm of {type(net).__name__}, got {sorted(map(str, momenta))}"
        )
    return layers, momenta.pop() if momenta else 0.1


class AdAutoMix(LearnedMixMethod):
    name = "adautomix"

    def __init__(
        self,
        model: nn.Module,
        num_classes: int,
        label_smoothing: float = 0.0,
        mix_samples: int = 3,
        is_random: bool = False,
        alpha: float = 1.0,
        beta: float = 0.3,
        linear_mix_weight: float = 0.5,
        lam_margin: float = 0.03,
        lam_margin_rule: str = "official",
        maximise_cosine: bool = False,
        lam_concat: bool = False,
        reduction: int = 2,
        upsampling: str = "bilinear",
        feature_stage: int = 3,
        teacher_momentum: float = 0.999,
        end_momentum: float = 0.999999,
        momentum_warmup: float = 0.1,
    ):
        """Options (official names in brackets): mix_samples N [mix_samples]; beta β, the
        adversarial weight [beta_radio]; linear_mix_weight ρ [mixup_radio]; teacher_momentum
        and end_momentum, the EMA teacher's momentum before momentum_warmup·T and at T [momentum,
        CosineScheduleHook end_momentum, adjust_scope[0]]; lam_concat, reduction and upsampling
        configure the generator [mix_block]."""
        super().__init__(
            model,
            num_classes,
            label_smoothing,
            feature_stage,
            teacher_momentum,
            end_momentum,
            momentum_warmup,
        )
        if mix_samples < 2:
            raise ConfigError(
                f"AdAutoMix mix_samples must be >= 2 (images per mixed sample), got {mix_samples}"
            )
        if alpha <= 0:
            raise ConfigError(f"AdAutoMix alpha must be > 0, got {alpha}")
        if not 0.0 <= beta <= 1.0 or not 0.0 <= linear_mix_weight <= 1.0:
            raise ConfigError(
                f"AdAutoMix beta and linear_mix_weight must be in [0, 1], got "
                f"{beta} and {linear_mix_weight}"
            )
        if not 0.0 <= lam_margin < 0.5:
            raise ConfigError(f"AdAutoMix lam_margin must be in [0, 0.5), got {lam_margin}")
        if lam_margin_rule not in LAM_MARGIN_RULES:
            raise ConfigError(
                f"AdAutoMix lam_margin_rule {lam_margin_rule!r} is not one of "
                f"{', '.join(LAM_MARGIN_RULES)}"
            )
        self.mix_samples = mix_samples
        self.min_batch_size = mix_samples
        self.is_random = is_random
        self.alpha = alpha
        self.beta = beta
        self.linear_mix_weight = linear_mix_weight
        self.lam_margin = lam_margin
        self.lam_margin_rule = lam_margin_rule
        self.cosine_sign = -1.0 if maximise_cosine else 1.0
        self.generator = MaskGenerator(
            self.feature_channels(model), reduction, lam_concat, upsampling
        )
        self.bn_layers, self.bn_momentum = batch_norms(self.net_k)

    def draw(self, batch_size: int, device: torch.device):
        """(N, λ and permutation of the generator branch, λ and permutation of the classifier's)."""
        n = int(torch.randint(2, self.mix_samples + 1, ())) if self.is_random else self.mix_samples
        draws = sample_beta(self.alpha, n)
        if n == 2:
            lams_mb, lams_bb = (draws[0], 1.0 - draws[0]), (draws[1], 1.0 - draws[1])
            perm_mb = pair_with_identity(batch_size, device)
            perm_bb = pair_with_identity(batch_size, device)
        else:
            # normalised i.i.d. Beta draws, not a Dirichlet; both branches share them
            lams_mb = lams_bb = tuple(u / sum(draws) for u in draws)
            perm_mb, perm_bb = random_permutations(batch_size, 2 * n, device).split(n, dim=1)
        return n, lams_mb, perm_mb, lams_bb, perm_bb

    def margin_fires(self, lams: tuple[float, ...]) -> bool:
        """Whether the classifier branch falls back to linear mixing (only λ₁ is tested)."""
        m, first = self.lam_margin, lams[0]
        if len(lams) == 2:
            return m >= first or m >= 1.0 - first
        if self.lam_margin_rule == "openmixup":
            return m >= first or m < 1.0 - first
        return m >= first or m > 1.0 - first

    def is_adversarial(self, step: int) -> bool:
        # The official counter starts at 0 (adversarial) and alternates; deriving it from the
        # global step gives the same pattern and survives a resume.
        return step % 2 == 0

    def loss_parts(self, model, images, labels, step):
        n, lams_mb, perm_mb, lams_bb, perm_bb = self.draw(images.shape[0], images.device)
        size = images.shape[-2:]
        targets = self.targets(labels)
        targets_mb = mix_targets(targets, perm_mb, lams_mb)
        targets_bb = mix_targets(targets, perm_bb, lams_bb)

        # EMA network on the clean batch: generator features and the sources' logits.
        # `.data`: BN's kernel updates its running statistics without bumping their autograd
        # version (the mixed pass saves them for backward, unread in train mode); the replay
        # below must not bump it either.
        stats = [t.data for bn in self.bn_layers for t in (bn.running_mean, bn.running_var)]
        with torch.no_grad():
            before = torch._foreach_mul(stats, 1.0) if stats else []
            features = self.net_k.features(images, upto=self.feature_stage)
            last = self.net_k.run_stages(features, self.feature_stage)
            logits_clean_k = self.head_mix_k(self.net_k.pre_logits(last)).float()
            clean_stats = self.batch_statistics(stats, before)

        # generator branch, through the frozen EMA network
        masks_mb = self.generator(features[perm_mb], lams_mb, size)
        logits_mix_k = self.mixed_logits(
            self.net_k, self.head_mix_k, mix_images(images, perm_mb, masks_mb)
        ).float()
        if stats:  # the official N clean passes' BN updates: N lerps toward the clean statistics
            torch._foreach_lerp_(stats, clean_stats, 1.0 - (1.0 - self.bn_momentum) ** n)
        loss_mix_k = soft_cross_entropy(logits_mix_k, targets_mb)
        cosine = F.cosine_similarity(logits_mix_k.unsqueeze(1), logits_clean_k[perm_mb], dim=-1)
        cos_sim = sum(lam * cosine[:, i] for i, lam in enumerate(lams_mb)).mean()
        if self.is_adversarial(step):
            loss_gen = -self.beta * loss_mix_k + self.cosine_sign * (1.0 - self.beta) * cos_sim
        else:
            loss_gen = loss_mix_k
        yield loss_gen, {"loss_mix_k": loss_mix_k.detach(), "cos_sim": cos_sim.detach()}

        # classifier branch: clean, linear N-way mix (N ≥ 3), generated mix with detached masks
        loss_one_q = soft_cross_entropy(model(images), targets)
        if n == 2:
            yield loss_one_q, {"loss_one_q": loss_one_q.detach()}
        else:
            yield (1.0 - self.linear_mix_weight) * loss_one_q, {"loss_one_q": loss_one_q.detach()}
            linear = sum(lam * images[perm_bb[:, i]] for i, lam in enumerate(lams_bb))
            logits_lin = self.mixed_logits(model, self.head_mix_q, linear)
            loss_lin_q = soft_cross_entropy(logits_lin, targets_bb)
            yield self.linear_mix_weight * loss_lin_q, {"loss_lin_q": loss_lin_q.detach()}

        if self.margin_fires(lams_bb):
            masks_bb = constant_masks(lams_bb, masks_mb)
        else:
            with torch.no_grad():
                masks_bb = self.generator(features[perm_bb], lams_bb, size)
        logits_q = self.mixed_logits(model, self.head_mix_q, mix_images(images, perm_bb, masks_bb))
        loss_mix_q = soft_cross_entropy(logits_q, targets_bb)
        yield loss_mix_q, {"loss_mix_q": loss_mix_q.detach()}

    def batch_statistics(
        self, after: list[torch.Tensor], before: list[torch.Tensor]
    ) -> list[torch.Tensor]:
        """The batch mean and variance a BN pass moved its running statistics toward:
        after = (1 − m)·before + m·batch, so batch = before + (after − before) / m."""
        if not after:
            return []
        batch = torch._foreach_sub(after, before)
        torch._foreach_div_(batch, self.bn_momentum)
        torch._foreach_add_(batch, before)
        return batch

    def mix_block_parameters(self):
        return list(self.generator.parameters())

    def sample_masks(self, images):
        _, lams, perm, _, _ = self.draw(images.shape[0], images.device)
        features = self.net_k.features(images, upto=self.feature_stage)
        return perm, self.generator(features[perm], lams, images.shape[-2:]), tuple(lams)
