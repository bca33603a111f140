"""The pictures: a sample grid shows un-normalised images, masks in a colour map with its scale and
each column's λ and class names; training curves have integer epoch ticks and an lr panel; both
decode as PNGs. (Replaces the tests of the PIL grid this module drew before.)"""

from __future__ import annotations

import io

import pytest
import torch
from PIL import Image

from adautomix.visualize import sample_figure, target_caption, training_curves

CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]


def png(fig) -> Image.Image:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return Image.open(io.BytesIO(buffer.getvalue()))


def grid_rows(batch: int = 4):
    torch.manual_seed(0)
    images = torch.randn(batch, 1, 28, 28)
    mask = torch.full((batch, 1, 28, 28), 0.25)  # soft weights that do not span [0, 1] alone
    mask[..., 4:18, 6:20] = 0.75
    return [
        ("source 1", images),
        ("source 2", images.flip(0)),
        ("mask 1", mask),
        ("mask 2", 1.0 - mask),
        ("mixed", images * mask + images.flip(0) * (1 - mask)),
    ]


def two_class_targets(batch: int = 4) -> torch.Tensor:
    """0.7 of class 8 (Bag) and 0.22 of class i, over a label-smoothing floor of 0.01."""
    targets = torch.full((batch, 10), 0.01)
    targets[:, 8] += 0.7 - 0.01
    targets[torch.arange(batch), torch.arange(batch)] = 0.22  # 0.7 + 0.22 + 8 x 0.01
    return targets


def test_a_caption_names_the_heaviest_classes_with_their_weights():
    target = two_class_targets()[1]
    assert target_caption(target, CLASSES) == "λ=0.70 Bag\nλ=0.22 Trouser"
    assert target_caption(torch.eye(10)[3], None) == "λ=1.00 3"


def test_the_grid_draws_masks_in_a_colour_map_with_its_scale_and_captions_every_column():
    fig = sample_figure(grid_rows(), (0.5,), (0.5,), two_class_targets(), CLASSES, max_columns=3)
    tiles = [ax for ax in fig.axes if ax.images]
    assert len(tiles) == 5 * 3  # rows x columns (capped)
    mask_tiles = [ax for ax in tiles if ax.images[0].get_array().ndim == 2]  # weights, not RGB
    assert [ax.get_subplotspec().rowspan.start for ax in mask_tiles] == [2, 2, 2, 3, 3, 3]
    assert all(
        ax.images[0].get_cmap().name == "viridis" and ax.images[0].get_clim() == (0.0, 1.0)
        for ax in mask_tiles
    )
    (scale,) = [ax for ax in fig.axes if ax.get_label() == "mask scale"]
    assert scale.get_ylabel() == "mask weight" and scale.get_ylim() == (0.0, 1.0)
    titles = [ax.get_ylabel() for ax in tiles if ax.get_ylabel()]
    assert titles == ["source 1", "source 2", "mask 1", "mask 2", "mixed"]
    captions = [ax.get_xlabel() for ax in tiles if ax.get_xlabel()]
    assert captions == [
        "λ=0.70 Bag\nλ=0.22 T-shirt/top",
        "λ=0.70 Bag\nλ=0.22 Trouser",
        "λ=0.70 Bag\nλ=0.22 Pullover",
    ]
    image = png(fig)
    assert image.format == "PNG" and image.width > 300 and image.height > 300


def test_tiles_show_the_images_un_normalised_and_the_masks_as_they_are():
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.1)
    g = torch.Generator().manual_seed(0)
    pixels = torch.rand(5, 3, 6, 4, generator=g)  # what the images really are
    normalised = (pixels - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    mask = torch.rand(5, 1, 6, 4, generator=g)
    fig = sample_figure(
        [("input", normalised), ("mask 1", mask), ("mixed", normalised[:4])], mean, std
    )
    tiles = [ax for ax in fig.axes if ax.images]
    assert len(tiles) == 3 * 4  # the shortest row's columns
    for ax in tiles:
        row, col = ax.get_subplotspec().rowspan.start, ax.get_subplotspec().colspan.start
        shown = torch.from_numpy(ax.images[0].get_array().copy()).float()
        if row == 1:
            torch.testing.assert_close(shown, mask[col, 0])
        else:
            want = (pixels[col].permute(1, 2, 0) * 255).round()
            assert (shown - want).abs().max() <= 1, (row, col)


def test_a_grid_without_masks_or_targets_has_no_scale_and_no_captions():
    rows = [("input", torch.rand(2, 3, 8, 8)), ("mixed", torch.rand(2, 3, 8, 8))]
    fig = sample_figure(rows, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    assert len(fig.axes) == 2 * 2  # the tiles, no scale
    assert not any(ax.get_xlabel() for ax in fig.axes)


@pytest.mark.parametrize("epochs", [1, 5, 40])
def test_training_curves_have_integer_epochs_every_top1_and_an_lr_panel(epochs):
    history = [
        {
            "epoch": e,
            "train_loss": 2.0 / e,
            "lr": 0.1 * (1 - (e - 1) / epochs),
            "val_top1": 60.0 + e,
            "val_top1_ema": 55.0 + e,
            "test_top1": 59.0 + e,
            "images_per_sec": 100.0,
        }
        for e in range(1, epochs + 1)
    ]
    fig = training_curves(history)
    loss, top1, lr = fig.axes
    png(fig)  # draws, so the ticks exist
    for ax in fig.axes:
        ticks = ax.get_xticks()
        visible = [t for t in ticks if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert visible and all(float(t).is_integer() for t in visible)
    assert [t.get_text() for t in top1.get_legend().get_texts()] == [
        "val, online",
        "val, EMA",
        "test, online",
    ]
    assert lr.get_ylabel().startswith("learning rate")
    (line,) = lr.get_lines()
    assert list(line.get_ydata()) == [h["lr"] for h in history]
    assert list(loss.get_lines()[0].get_ydata()) == [h["train_loss"] for h in history]
