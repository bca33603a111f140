"""The confusion matrix of a network on a labelled split, and its picture."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import nn

from .loop import predictions


def confusion_matrix(network: nn.Module, loader: Iterable, num_classes: int) -> torch.Tensor:
    """counts[true, predicted] over the loader, accumulated on the device; int64, on the CPU."""
    counts = None
    for logits, labels in predictions(network, loader):
        pairs = torch.bincount(
            labels * num_classes + logits.argmax(dim=1), minlength=num_classes**2
        )
        counts = pairs if counts is None else counts + pairs
    if counts is None:
        raise ValueError("confusion_matrix got an empty loader")
    return counts.view(num_classes, num_classes).cpu()


def confusion_figure(matrix: torch.Tensor, classes: Sequence[str]):
    """Rows normalised to the fraction of each true class, the counts written in the cells."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = matrix.numpy()
    fractions = counts / counts.sum(axis=1, keepdims=True).clip(min=1)
    size = max(4.0, 0.45 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(fractions, cmap="Blues", vmin=0, vmax=1)
    ticks = range(len(classes))
    ax.set_xticks(ticks, classes, rotation=90, fontsize=7)
    ax.set_yticks(ticks, classes, fontsize=7)
    ax.set(xlabel="predicted", ylabel="true")
    if len(classes) <= 20:
        for (true, predicted), count in zip(((t, p) for t in ticks for p in ticks), counts.flat):
            ax.text(
                predicted,
                true,
                str(count),
                ha="center",
                va="center",
                fontsize=6,
                color="white" if fractions[true, predicted] > 0.5 else "black",
            )
    fig.tight_layout()
    return fig
