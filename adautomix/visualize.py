"""Pictures people would rather look at than numbers: mixed-sample grids and training curves."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw


def to_uint8(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Undo the loader's normalisation: B×C×H×W float -> B×H×W×3 uint8 (greys and masks to RGB)."""
    images = images.detach().float().cpu()
    if images.shape[1] == len(mean):
        m = torch.tensor(mean).view(1, -1, 1, 1)
        s = torch.tensor(std).view(1, -1, 1, 1)
        images = images * s + m
    images = images.clamp(0, 1)
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    return (images.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)


def image_grid(rows: Sequence[tuple[str, torch.Tensor]], mean: Sequence[float],
               std: Sequence[float], max_columns: int = 8, scale: int = 3) -> Image.Image:
    """One row per (title, images) pair: source images, masks (1 channel, shown as grey values
    in [0, 1]) and mixed images, each column the same sample."""
    columns = min(max_columns, min(t.shape[0] for _, t in rows))
    height, width = rows[0][1].shape[-2:]
    cell_h, cell_w = height * scale, width * scale
    label_w = 70
    canvas = Image.new("RGB", (label_w + columns * (cell_w + 2), len(rows) * (cell_h + 2)), "white")
    draw = ImageDraw.Draw(canvas)
    for r, (title, images) in enumerate(rows):
        is_mask = images.shape[1] == 1 and title.startswith("mask")
        pixels = to_uint8(images[:columns], (0.0,), (1.0,)) if is_mask else to_uint8(images[:columns], mean, std)
        y = r * (cell_h + 2)
        draw.text((2, y + cell_h // 2 - 5), title, fill="black")
        for c in range(columns):
            tile = Image.fromarray(pixels[c]).resize((cell_w, cell_h), Image.NEAREST)
            canvas.paste(tile, (label_w + c * (cell_w + 2), y))
    return canvas


def training_curves(history: Sequence[dict[str, float]]):
    """Loss and top-1 (online and EMA) per epoch, as a matplotlib figure."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.2))
    ax_loss.plot(epochs, [h["train_loss"] for h in history], marker="o")
    ax_loss.set(xlabel="epoch", ylabel="train loss")
    for key, label in (("val_top1", "online"), ("val_top1_ema", "EMA")):
        if all(key in h for h in history):
            ax_acc.plot(epochs, [h[key] for h in history], marker="o", label=label)
    ax_acc.set(xlabel="epoch", ylabel="val top-1 (%)")
    ax_acc.legend()
    fig.tight_layout()
    return fig
