"""Occlusion robustness: top-1 against the fraction of the image hidden (spec §7.5).

The image is cut into a grid of square patches; for a ratio r, round(r·P) of the P patches are
chosen uniformly without replacement, the same ones for every image of a batch, and set to 0 in
normalised space (the dataset's mean colour). The paper's protocol is 224 px with 16 px patches (14
× 14 = 196); at other sizes the patch is scaled with the image, ⌊size·16/224⌋ pixels, which keeps
about 14 patches a side: 2 px at 28-32 px (14 × 14 and 16 × 16 patches), 4 px at 64. The patches of
batch b at ratio i come from a generator seeded by (seed, i, b), so a curve is reproducible and
every network evaluated with the same seed and loader sees the same occlusions."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import torch
from torch import nn

from ..config import ConfigError
from .accuracy import summed_over_ranks
from .loop import evaluating, logits_of

RATIOS = tuple(round(0.1 * i, 1) for i in range(10))  # 0.0 ... 0.9
PAPER_SIZE, PAPER_PATCH = 224, 16


def patch_size(image_size: int) -> int:
    """The paper's 16 px at 224 px, scaled: about 14 patches along a side."""
    return max(1, image_size * PAPER_PATCH // PAPER_SIZE)


def occlusion_mask(
    height: int, width: int, patch: int, ratio: float, generator: torch.Generator
) -> torch.Tensor:
    """H×W bool, True on round(ratio·P) patches of the ceil(H/patch) × ceil(W/patch) grid."""
    rows, cols = math.ceil(height / patch), math.ceil(width / patch)
    chosen = torch.randperm(rows * cols, generator=generator)[: round(ratio * rows * cols)]
    grid = torch.zeros(rows * cols, dtype=torch.bool)
    grid[chosen] = True
    full = grid.view(rows, cols).repeat_interleave(patch, 0).repeat_interleave(patch, 1)
    return full[:height, :width]


def metric_name(ratio: float) -> str:
    return f"occlusion_top1_r{ratio:g}"


class Occlusion:
    name = "occlusion"
    figure_name = "occlusion_curve"

    def __init__(self, ratios: Sequence[float] = RATIOS, patch: int = 0, seed: int = 0):
        ratios = tuple(float(r) for r in ([ratios] if isinstance(ratios, (int, float)) else ratios))
        if not ratios or any(not 0 <= r <= 1 for r in ratios):
            raise ConfigError(f"occlusion ratios must lie in [0, 1], got {list(ratios)}")
        if not isinstance(patch, int) or patch < 0:
            raise ConfigError(
                f"occlusion patch must be a pixel count >= 1 (0: scaled to the "
                f"image), got {patch!r}"
            )
        self.ratios, self.patch, self.seed = ratios, patch, seed
        self.curve: dict[float, float] = {}

    def run(
        self, network: nn.Module, loader: Iterable, precision: str = "fp32", sharded: bool = False
    ) -> dict[str, float]:
        correct = [None] * len(self.ratios)
        count = 0
        with evaluating(network), torch.inference_mode():
            for batch, (images, labels) in enumerate(loader):
                height, width = images.shape[-2:]
                patch = self.patch or patch_size(min(height, width))
                for i, ratio in enumerate(self.ratios):
                    generator = torch.Generator().manual_seed(
                        int(np.random.SeedSequence([self.seed, i, batch]).generate_state(1)[0])
                    )
                    mask = occlusion_mask(height, width, patch, ratio, generator)
                    hidden = images.masked_fill(mask.to(images.device), 0)
                    hit = (logits_of(network, hidden, precision).argmax(1) == labels).sum()
                    correct[i] = hit if correct[i] is None else correct[i] + hit
                count += labels.shape[0]
        if not count:
            raise ValueError("occlusion got no batches")
        if sharded:  # every call sums this rank's count afresh: each returns the global one
            correct, counts = zip(*(summed_over_ranks(c, count) for c in correct))
            count = counts[0]
        self.curve = {r: 100 * float(c) / count for r, c in zip(self.ratios, correct)}
        values = {metric_name(r): v for r, v in self.curve.items()}
        values["occlusion_top1_mean"] = sum(self.curve.values()) / len(self.curve)
        return values

    def figure(self):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(4.5, 3.2))
        ax.plot(list(self.curve), list(self.curve.values()), "o-")
        ax.set(
            xlabel="occlusion ratio",
            ylabel="top-1 (%)",
            ylim=(0, 100),
            title="occlusion robustness",
        )
        ax.grid(alpha=0.3)
        fig.tight_layout()
        return fig
