"""Pictures people would rather look at than numbers: mixed-sample grids and training curves.

Both are matplotlib figures, for tracking.Tracker.log_figure. A sample grid has one row per
(title, images) pair and one column per sample: source images, masks (rows whose title starts
with "mask", 1 channel of weights in [0, 1], drawn in a colour map with its scale beside them) and
the mixed images, with each column's label weights λ and class names under the last row. Training
curves are three panels over integer epochs: the training loss, top-1 of every network and split
the run evaluated, and the learning rate."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import torch

MASK_PREFIX = "mask"  # a row with this title prefix holds masks, not images
MASK_COLOURS = "viridis"
MIN_SHOWN_WEIGHT = 0.05  # label weights below this (label smoothing's floor) stay unnamed
TOP1_CURVE = re.compile(r"^(val|test)_top1(_ema)?$")


def _figure(**options):
    """A figure outside pyplot's registry, so that one drawn every epoch is freed once logged."""
    from matplotlib.figure import Figure

    return Figure(layout="constrained", **options)


def to_uint8(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Undo the loader's normalisation: B×C×H×W float -> B×H×W×3 uint8 (greys to RGB)."""
    images = images.detach().float().cpu()
    if images.shape[1] == len(mean):
        m = torch.tensor(mean).view(1, -1, 1, 1)
        s = torch.tensor(std).view(1, -1, 1, 1)
        images = images * s + m
    images = images.clamp(0, 1)
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    return (images.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)


def target_caption(target: torch.Tensor, classes: Sequence[str] | None = None) -> str:
    """One sample's soft target as 'λ=0.62 Bag' lines, heaviest first (at most three)."""
    weights, indices = target.detach().float().cpu().sort(descending=True)
    lines = [
        f"λ={w:.2f} {classes[i] if classes else i}"
        for w, i in zip(weights[:3].tolist(), indices[:3].tolist())
        if w >= MIN_SHOWN_WEIGHT
    ]
    return "\n".join(lines)


def sample_figure(
    rows: Sequence[tuple[str, torch.Tensor]],
    mean: Sequence[float],
    std: Sequence[float],
    targets: torch.Tensor | None = None,
    classes: Sequence[str] | None = None,
    max_columns: int = 8,
):
    """The grid of `rows` (title, B×C×H×W in the loader's normalised space; masks B×1×H×W),
    one column per sample; `targets` (B×K soft targets of the last row) caption the columns."""
    columns = min(max_columns, min(t.shape[0] for _, t in rows))
    masks = [i for i, (title, _) in enumerate(rows) if title.startswith(MASK_PREFIX)]
    captioned = targets is not None
    fig = _figure(figsize=(1.1 * columns + 1.8, 1.1 * len(rows) + (0.6 if captioned else 0.1)))
    grid = fig.add_gridspec(len(rows), columns + 1, width_ratios=[1] * columns + [0.12])
    shown = None
    for r, (title, images) in enumerate(rows):
        is_mask = r in masks
        if not is_mask:
            pixels = to_uint8(images[:columns], mean, std)
        for c in range(columns):
            ax = fig.add_subplot(grid[r, c])
            ax.set_xticks([])
            ax.set_yticks([])
            if is_mask:
                shown = ax.imshow(
                    images[c, 0].detach().float().cpu().numpy(),
                    cmap=MASK_COLOURS,
                    vmin=0.0,
                    vmax=1.0,
                    interpolation="nearest",
                )
            else:
                ax.imshow(pixels[c], interpolation="nearest")
            if c == 0:
                ax.set_ylabel(title, rotation=0, ha="right", va="center", fontsize=8)
            if captioned and r == len(rows) - 1:
                ax.set_xlabel(target_caption(targets[c], classes), fontsize=6)
    if shown is not None:
        scale = fig.add_subplot(grid[masks[0] : masks[-1] + 1, columns], label="mask scale")
        fig.colorbar(shown, cax=scale, label="mask weight")
    return fig


def training_curves(history: Sequence[dict[str, float]]):
    """Training loss, top-1 of each network and split, and the learning rate, per epoch."""
    from matplotlib.ticker import MaxNLocator

    epochs = [int(h["epoch"]) for h in history]
    fig = _figure(figsize=(12, 3.2))
    ax_loss, ax_acc, ax_lr = fig.subplots(1, 3)
    ax_loss.plot(epochs, [h["train_loss"] for h in history], marker="o")
    ax_loss.set(xlabel="epoch", ylabel="train loss")
    curves = sorted(
        {k for h in history for k in h if TOP1_CURVE.match(k)},
        key=lambda k: (not k.startswith("val"), k.endswith("_ema")),
    )
    for key in curves:
        points = [(h["epoch"], h[key]) for h in history if key in h]
        split, _, network = key.partition("_top1")
        ax_acc.plot(*zip(*points), marker="o", label=f"{split}, {'EMA' if network else 'online'}")
    ax_acc.set(xlabel="epoch", ylabel="top-1 (%)")
    if curves:
        ax_acc.legend(fontsize=8)
    for key in sorted({k for h in history for k in h if k == "lr" or k.startswith("lr_")}):
        points = [(h["epoch"], h[key]) for h in history if key in h]
        ax_lr.plot(*zip(*points), marker="o", label=key)
    ax_lr.set(xlabel="epoch", ylabel="learning rate (end of epoch)")
    ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    first, last = min(epochs), max(epochs)
    for ax in (ax_loss, ax_acc, ax_lr):
        if last - first <= 12:  # every epoch; a locator would put fractions around one epoch
            ax.set_xticks(range(first, last + 1))
            ax.set_xlim(first - 0.5, last + 0.5)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    return fig
