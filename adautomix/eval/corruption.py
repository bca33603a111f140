"""Corruption robustness: top-1 under the 19 CIFAR-C corruptions × 5 severities (spec §7.2).

The corrupted test set is a prepared dataset of its own (data/corrupted.py: NAME-c, official
arrays or generated once); this evaluation only reads it, with the clean test loader's
normalisation, resolution recipe, batch size, device, subset and rank. Reported:
- `corruption_top1`: the paper's pooled figure, the unweighted mean over corruptions × severities
  (every split has as many images as the test split, so it is also the top-1 over their union);
- `corruption_top1_<corruption>`: the mean over severities of one corruption;
- `corruption_top1_s<k>`: the mean over corruptions at severity k;
and every (corruption, severity) top-1 in `details`, drawn as a per-corruption bar chart; `tags`
name the corrupted set and its content hash for the run's record."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from torch import nn
from tqdm import tqdm

from ..config import ConfigError
from .accuracy import TopK
from .loop import check_images, predictions


class CorruptionAccuracy:
    name = "corruption"
    figure_name = "corruption_bars"

    def __init__(
        self,
        corruptions: Sequence[str] | None = None,
        severities: Sequence[int] = (1, 2, 3, 4, 5),
        progress: bool = True,
        images: int = 0,
    ):
        """`corruptions`: names of data.corruptions.CORRUPTIONS (None: all 19); `images`: the
        first N images of each corrupted split (0: as many as the clean loader reads)."""
        # imported here: the corruption functions load OpenCV and scipy (a second), which an
        # evaluation without corruptions never needs
        from ..data.corruptions import CORRUPTIONS, check_corruptions
        from ..data.errors import DataError

        corruptions = (
            tuple(CORRUPTIONS)
            if corruptions is None
            else ((corruptions,) if isinstance(corruptions, str) else tuple(corruptions))
        )
        severities = (severities,) if isinstance(severities, int) else tuple(severities)
        try:
            check_corruptions(corruptions, severities)
        except DataError as error:
            raise ConfigError(str(error)) from None
        if not corruptions or not severities:
            raise ConfigError("corruption needs at least one corruption and one severity")
        self.corruptions, self.severities, self.progress = corruptions, severities, progress
        self.images = check_images(images)
        self.details: dict[str, float] = {}
        self.tags: dict[str, str] = {}

    def run(
        self, network: nn.Module, loader, precision: str = "fp32", sharded: bool = False
    ) -> dict[str, float]:
        from ..data import build_loader
        from ..data.corrupted import ensure_corrupted, split_name

        if not hasattr(loader, "manifest"):
            raise ConfigError(
                "corruption reads the corrupted copy of the loader's dataset: "
                "give it a loader made by adautomix.data.build_loader"
            )
        corrupted = ensure_corrupted(loader.manifest, progress=self.progress)
        # The run's constants, not the corrupted manifest's: a corruption is judged by the
        # network exactly as the clean test split is.
        recipe = dataclasses.replace(loader.recipe, mean=tuple(loader.mean), std=tuple(loader.std))
        jobs = [(c, s) for c in self.corruptions for s in self.severities]
        top1 = {}
        for corruption, severity in tqdm(
            jobs, desc="corruptions × severities", leave=False, disable=not self.progress
        ):
            split_loader = build_loader(
                corrupted,
                split_name(corruption, severity),
                batch_size=loader.batch_size,
                train=False,
                kind="memory",
                device=loader.device,
                subset=min(self.images, loader.subset or self.images) or loader.subset,
                recipe=recipe,
                rank=loader.rank,
                world_size=loader.world_size,
            )
            tracker = TopK(1)
            for logits, labels in predictions(network, split_loader, precision):
                tracker.update(logits, labels)
            if sharded:
                tracker.all_reduce()
            top1[corruption, severity] = tracker.compute()
        self.details = {split_name(c, s): v for (c, s), v in top1.items()}
        # which corrupted set the numbers are of, for the run's record
        self.tags = {"corruption_data": corrupted.name, "corruption_data_hash": corrupted.sha256}
        values = {"corruption_top1": sum(top1.values()) / len(top1)}
        for corruption in self.corruptions:
            values[f"corruption_top1_{corruption}"] = _mean(
                top1[corruption, s] for s in self.severities
            )
        for severity in self.severities:
            values[f"corruption_top1_s{severity}"] = _mean(
                top1[c, severity] for c in self.corruptions
            )
        return values

    def figure(self):
        """One bar per corruption (the mean over severities), each severity a dot on it."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        names = list(self.corruptions)
        means = [_mean(self.details[f"{c}-{s}"] for s in self.severities) for c in names]
        fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(names) + 2), 3.8))
        ax.bar(range(len(names)), means, color="tab:blue", alpha=0.7, label="mean over severities")
        for severity in self.severities:
            ax.plot(
                range(len(names)),
                [self.details[f"{c}-{severity}"] for c in names],
                ".",
                color=plt.cm.viridis((severity - 1) / 4),
                label=f"severity {severity}",
            )
        pooled = sum(self.details.values()) / len(self.details)
        ax.axhline(
            pooled, color="black", linestyle="--", linewidth=1, label=f"pooled {pooled:.2f}%"
        )
        ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
        ax.set(ylabel="top-1 (%)", ylim=(0, 100), title="corruption robustness")
        ax.legend(fontsize=7, ncols=2)
        fig.tight_layout()
        return fig


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)
