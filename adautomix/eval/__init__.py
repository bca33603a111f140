"""Evaluation: `evaluate(network, loader, metrics)` with metrics named in a list.

Each metric accumulates over batches of (logits, labels). Robustness metrics (corruptions, FGSM,
calibration, occlusion) join this table as they land."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from torch import nn

from ..config import ConfigError
from .accuracy import MeanLoss, TopK
from .loop import predictions

METRICS = {
    "top1": lambda: TopK(1),
    "top5": lambda: TopK(5),
    "loss": MeanLoss,
}


def evaluate(network: nn.Module, loader: Iterable, metrics: Sequence[str] = ("top1", "top5", "loss"),
             amp: bool = False, sharded: bool = False) -> dict[str, float]:
    """`sharded`: the loader reads this rank's shard of the split; the metrics' sums and counts
    are all-reduced over the ranks, so every rank returns the whole split's figures."""
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ConfigError(f"unknown metric(s) {unknown}; valid: {', '.join(METRICS)}")
    trackers = [METRICS[m]() for m in metrics]
    for logits, labels in predictions(network, loader, amp):
        for tracker in trackers:
            tracker.update(logits, labels)
    if sharded:
        for tracker in trackers:
            tracker.all_reduce()
    return {t.name: t.compute() for t in trackers}
