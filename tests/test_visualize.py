"""visualize.py: the mixed-sample grid is a PNG that decodes to the documented layout (a title
column, one row per (title, images) pair, one column per sample, un-normalised pixels, masks as
grey values), and the training curves render."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from adautomix.visualize import image_grid, training_curves

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.1)
LABEL_W, GAP, SCALE = 70, 2, 3


def decode(image: Image.Image) -> np.ndarray:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


def test_image_grid_layout_pixels_and_masks():
    g = torch.Generator().manual_seed(0)
    pixels = torch.rand(5, 3, 6, 4, generator=g)                 # what the images really are
    normalised = (pixels - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    mask = torch.rand(5, 1, 6, 4, generator=g)
    png = decode(image_grid([("input", normalised), ("mask 1", mask), ("mixed", normalised)],
                            MEAN, STD, max_columns=4))
    columns, cell_h, cell_w = 4, 6 * SCALE, 4 * SCALE
    assert png.shape == (3 * (cell_h + GAP), LABEL_W + columns * (cell_w + GAP), 3)
    for row, expected in ((0, pixels), (1, mask.expand(-1, 3, -1, -1)), (2, pixels)):
        for col in range(columns):
            y, x = row * (cell_h + GAP), LABEL_W + col * (cell_w + GAP)
            tile = png[y:y + cell_h:SCALE, x:x + cell_w:SCALE]       # one pixel per source pixel
            want = (expected[col].permute(1, 2, 0).numpy() * 255).round()
            assert np.abs(tile.astype(float) - want).max() <= 1, (row, col)
    # the title column carries the row titles (dark text on white)
    assert (png[:, :LABEL_W] < 128).any() and png[0, 0].tolist() == [255, 255, 255]


def test_grey_images_become_rgb_and_columns_follow_the_shortest_row():
    grey = torch.zeros(3, 1, 5, 5)
    png = decode(image_grid([("input", grey), ("mixed", torch.zeros(2, 1, 5, 5))], (0.0,), (1.0,)))
    assert png.shape == (2 * (5 * SCALE + GAP), LABEL_W + 2 * (5 * SCALE + GAP), 3)


def test_training_curves_render_online_and_ema():
    history = [{"epoch": e, "train_loss": 2.0 / e, "val_top1": 10.0 * e, "val_top1_ema": 9.0 * e}
               for e in (1, 2, 3)]
    figure = training_curves(history)
    loss_axes, accuracy_axes = figure.axes
    assert [line.get_label() for line in accuracy_axes.get_lines()] == ["online", "EMA"]
    assert list(loss_axes.get_lines()[0].get_ydata()) == [2.0, 1.0, 2.0 / 3]
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    assert Image.open(io.BytesIO(buffer.getvalue())).format == "PNG"
