"""The paper's baseline mixers: SaliencyMix, FMix, ResizeMix, PuzzleMix and ManifoldMix."""

from __future__ import annotations

import math

import gco
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from adautomix.mixers import create_method, method_defaults
from adautomix.mixers.fmix import binarise_top, fmix, low_frequency_noise
from adautomix.mixers.manifoldmix import ManifoldMix, manifold_mix
from adautomix.mixers.puzzlemix import (
    PuzzleMix,
    block_counts,
    graph_cut,
    input_saliency,
    puzzlemix,
    transport_sources,
)
from adautomix.mixers.resizemix import resizemix
from adautomix.mixers.saliencymix import saliency_peak, saliencymix


def puzzlemix_on_image_saliency(images, targets, **options):
    # Any non-negative map will do for the mixing invariants; the real one needs a model.
    return puzzlemix(images, targets, images.abs().mean(1), **options)


MIXERS = {
    "saliencymix": saliencymix,
    "fmix": fmix,
    "resizemix": resizemix,
    "puzzlemix": puzzlemix_on_image_saliency,
}
# PuzzleMix moves x's own cells around (transport), so its kept pixels need not stay in place.
KEEPS_OWN_PIXELS = {"saliencymix", "fmix", "resizemix"}


@pytest.fixture
def make_backbone(tiny_backbone):
    """TinyBackbone with other channel or class counts."""
    return lambda **kwargs: type(tiny_backbone)(**kwargs)


@pytest.mark.parametrize("name", MIXERS)
@pytest.mark.parametrize(
    "channels,batch,size", [(3, 5, 16), (1, 3, 16), (3, 1, 16), (1, 1, 16), (1, 4, 28)]
)
def test_mixer_invariants(name, channels, batch, size):
    images = torch.rand(batch, channels, size, size, generator=torch.Generator().manual_seed(0))
    images = images * 4 - 2  # a normalised-looking range around 0
    targets = torch.eye(batch)  # sample i is class i, so a row of targets names its sources
    changed = False
    for seed in range(6):
        torch.manual_seed(seed)
        mixed, mixed_targets, masks = MIXERS[name](images, targets, alpha=1.0)
        assert mixed.shape == images.shape
        assert images.min() <= mixed.min() and mixed.max() <= images.max()
        torch.testing.assert_close(mixed_targets.sum(1), torch.ones(batch))
        assert masks.shape == (batch, 2, size, size)
        torch.testing.assert_close(masks.sum(1), torch.ones(batch, size, size))
        allowed = {0.0, 0.5, 1.0} if name == "puzzlemix" else {0.0, 1.0}
        assert set(masks.unique().tolist()) <= allowed
        # The label weight of x is the share of x in the mask, unless x was paired with itself.
        own_area = masks[:, 0].flatten(1).mean(1)
        own_weight = mixed_targets.diagonal()
        paired_with_other = own_weight < 1 - 1e-6
        torch.testing.assert_close(own_weight[paired_with_other], own_area[paired_with_other])
        assert torch.all(own_weight[own_area == 1] == 1)
        if name in KEEPS_OWN_PIXELS:
            kept = masks[:, :1].expand_as(images) == 1
            assert torch.equal(mixed[kept], images[kept])
        changed |= not torch.equal(mixed, images)
    assert changed or batch == 1


@pytest.mark.parametrize("name", MIXERS)
def test_mixers_are_deterministic_under_a_seed(name):
    images, targets = torch.randn(5, 3, 16, 16), torch.eye(5)
    outputs = []
    for _ in range(2):
        torch.manual_seed(3)
        outputs.append(MIXERS[name](images, targets))
    for first, second in zip(*outputs):
        assert torch.equal(first, second)


def test_factory_builds_every_baseline_with_the_papers_cifar100_alpha(tiny_backbone):
    expected = {
        "saliencymix": 0.2,
        "fmix": 0.2,
        "resizemix": 1.0,
        "manifoldmix": 2.0,
        "puzzlemix": 1.0,
    }
    for name, alpha in expected.items():
        assert method_defaults(name)["alpha"] == alpha
        method = create_method(name, tiny_backbone, num_classes=10)
        images, labels = torch.randn(3, 3, 16, 16), torch.tensor([0, 4, 9])
        loss, _ = method.training_step(tiny_backbone, images, labels, step=0)
        assert loss.ndim == 0 and torch.isfinite(loss)
        grid = method.sample_grid(tiny_backbone, images, labels)
        assert grid.rows[0][0] == "input" and grid.rows[-1][1].shape == images.shape
        # the mixed images' targets, which caption the picture: a mix of the batch's own classes
        torch.testing.assert_close(grid.targets.sum(1), torch.ones(3), msg=name)
        assert set(grid.targets.nonzero()[:, 1].tolist()) <= {0, 4, 9}, name


# --- SaliencyMix ---------------------------------------------------------------------------


def blob_image(channels: int, row: int, col: int, size: int = 32) -> torch.Tensor:
    image = torch.zeros(channels, size, size)
    image[:, row - 2 : row + 2, col - 2 : col + 2] = 1.0
    return image


@pytest.mark.parametrize("channels", [1, 3])
def test_saliency_peak_finds_the_blob_whatever_the_normalisation(channels):
    image = blob_image(channels, 22, 9)
    row, col = saliency_peak(image)
    assert 18 <= row <= 25 and 5 <= col <= 12
    noisy = (image * 200 + torch.randint(0, 40, image.shape)).round() / 255
    assert saliency_peak(noisy) == saliency_peak(noisy * 0.25 - 1.7)


def test_saliencymix_centres_one_box_on_the_partners_peak():
    images = blob_image(3, 20, 11).expand(4, 3, 32, 32).clone()
    torch.manual_seed(0)
    _, _, masks = saliencymix(images, torch.eye(4), alpha=1.0)
    box = masks[:, 1] == 1
    assert torch.equal(box, box[:1].expand_as(box))  # one box for the whole batch
    rows, cols = box[0].any(1).nonzero()[:, 0], box[0].any(0).nonzero()[:, 0]
    peak_row, peak_col = saliency_peak(images[0])
    assert box[0, peak_row, peak_col]
    assert abs((rows.min() + rows.max() + 1) / 2 - peak_row) <= 1
    assert abs((cols.min() + cols.max() + 1) / 2 - peak_col) <= 1


# --- FMix ----------------------------------------------------------------------------------


def test_fmix_mask_keeps_the_top_fraction_of_the_noise():
    torch.manual_seed(0)
    noise = low_frequency_noise(32, 32, decay_power=3.0)
    mask = binarise_top(noise, 0.3)
    kept = int(mask.sum())
    assert kept in (math.floor(0.3 * 1024), math.ceil(0.3 * 1024))
    assert noise[mask == 1].min() > noise[mask == 0].max()


def test_fmix_masks_are_low_frequency_blobs():
    torch.manual_seed(0)
    masks = torch.stack([binarise_top(low_frequency_noise(32, 32, 3.0), 0.5) for _ in range(20)])
    edges = (masks[:, :, 1:] != masks[:, :, :-1]).float().mean()
    assert edges < 0.1  # a white-noise mask flips between neighbours half of the time


# --- ResizeMix -----------------------------------------------------------------------------


def test_resizemix_pastes_the_whole_partner_shrunk_into_the_box():
    image = torch.randn(1, 3, 32, 32)
    for seed in range(5):
        torch.manual_seed(seed)
        mixed, _, masks = resizemix(image, torch.ones(1, 1))
        box = masks[0, 1] == 1
        rows, cols = box.any(1).nonzero()[:, 0], box.any(0).nonzero()[:, 0]
        top, left, height, width = rows.min(), cols.min(), len(rows), len(cols)
        assert int(box.sum()) == height * width  # a rectangle
        assert 0 < height <= 0.8 * 32 and 0 < width <= 0.8 * 32
        shrunk = F.interpolate(image, size=(height, width), mode="nearest")
        assert torch.equal(mixed[:, :, top : top + height, left : left + width], shrunk)


def test_resizemix_rejects_a_bad_scope():
    with pytest.raises(ValueError, match="scope"):
        resizemix(torch.randn(2, 3, 8, 8), torch.eye(2), scope=(0.5, 1.5))


# --- ManifoldMix ---------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 3])
def test_manifold_mix_mixes_at_each_chosen_layer(make_backbone, channels):
    model = make_backbone(in_chans=channels, num_classes=5).eval()
    seen = []
    original_forward_from = model.forward_from

    def recording_forward_from(hidden, start):
        seen.append((start, hidden))
        return original_forward_from(hidden, start)

    model.forward_from = recording_forward_from
    images, targets = torch.randn(5, channels, 16, 16), torch.eye(5)
    for seed in range(12):
        torch.manual_seed(seed)
        seen.clear()
        logits, mixed_targets = manifold_mix(model, images, targets, alpha=2.0)
        ((start, hidden),) = seen
        torch.testing.assert_close(mixed_targets.sum(1), torch.ones(5))
        # Rows of eye targets give λ (on any row not paired with itself) and the partners.
        lam = float(mixed_targets.diagonal().min())
        partner = (mixed_targets - lam * targets).argmax(1)
        if start == 0:  # mixed at the input: the stem saw the mixed images
            expected = model.stem(lam * images + (1 - lam) * images[partner])
        else:
            clean = model.features(images, upto=start)
            expected = lam * clean + (1 - lam) * clean[partner]
        torch.testing.assert_close(hidden, expected, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(logits, original_forward_from(hidden, start))


def test_manifold_mix_draws_every_layer(tiny_backbone):
    starts = set()
    original_forward_from = tiny_backbone.forward_from

    def recording_forward_from(hidden, start):
        starts.add(start)
        return original_forward_from(hidden, start)

    tiny_backbone.forward_from = recording_forward_from
    for seed in range(20):
        torch.manual_seed(seed)
        manifold_mix(tiny_backbone, torch.randn(2, 3, 16, 16), torch.eye(10)[:2])
    assert starts == {0, 1, 2}


def test_manifold_mix_is_deterministic_under_a_seed(tiny_backbone):
    model = tiny_backbone.eval()
    images, targets = torch.randn(3, 3, 16, 16), torch.eye(10)[:3]
    runs = []
    for _ in range(2):
        torch.manual_seed(5)
        runs.append(manifold_mix(model, images, targets))
    for first, second in zip(*runs):
        assert torch.equal(first, second)


@pytest.mark.parametrize("channels,batch", [(1, 1), (3, 5)])
def test_manifoldmix_step_trains_the_whole_net(make_backbone, channels, batch):
    model = make_backbone(in_chans=channels)
    method = ManifoldMix(model, num_classes=10)
    torch.manual_seed(0)
    loss, _ = method.training_step(
        model, torch.randn(batch, channels, 16, 16), torch.randint(10, (batch,)), step=0
    )
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in model.parameters())


def test_manifoldmix_rejects_a_plain_module_and_bad_layers(tiny_backbone):
    with pytest.raises(TypeError, match="Backbone"):
        ManifoldMix(torch.nn.Linear(3, 3), num_classes=3)
    with pytest.raises(ValueError, match="layers"):
        ManifoldMix(tiny_backbone, num_classes=10, layers=(0, 7))


# --- PuzzleMix -----------------------------------------------------------------------------


def test_input_saliency_leaves_the_model_as_it_found_it(tiny_backbone):
    tiny_backbone.train()
    stats = tiny_backbone.stem[1].running_mean.clone()
    images = torch.randn(3, 3, 16, 16)
    saliency = input_saliency(tiny_backbone, images, torch.eye(10)[:3])
    assert saliency.shape == (3, 16, 16) and saliency.min() >= 0 and saliency.max() > 0
    assert tiny_backbone.training
    assert torch.equal(tiny_backbone.stem[1].running_mean, stats)  # eval mode: BN untouched
    assert all(p.grad is None for p in tiny_backbone.parameters())


def test_batched_graph_cut_equals_one_cut_per_sample():
    rng = np.random.default_rng(0)
    for side in (2, 4, 8):
        unary = rng.integers(0, 400, (6, side, side, 3), dtype=np.int32)
        weight_v = rng.integers(0, 60, (6, side - 1, side), dtype=np.int32)
        weight_h = rng.integers(0, 60, (6, side, side - 1), dtype=np.int32)
        smoothness = ((np.arange(3)[:, None] - np.arange(3)[None]) ** 2).astype(np.int32)
        one_by_one = [
            gco.cut_grid_graph(
                unary[i], smoothness, weight_v[i], weight_h[i], algorithm="swap"
            ).reshape(side, side)
            for i in range(6)
        ]
        np.testing.assert_array_equal(graph_cut(unary, weight_v, weight_h), np.stack(one_by_one))


def test_transport_plan_moves_each_cell_at_most_once_and_fills_the_visible_ones():
    torch.manual_seed(0)
    visible = torch.randint(3, (8, 4, 4)).float() / 2
    saliency = torch.rand(8, 4, 4) ** 3
    saliency[:, 0, 0] = 0  # a zero-saliency cell once left a hole in the official code
    sources = transport_sources(visible, saliency / saliency.sum((1, 2), keepdim=True), eps=0.8)
    for row, seen in zip(sources, visible.flatten(1) > 0):
        moved = row[row < 16]
        assert len(moved.unique()) == len(moved)  # no cell is copied twice
        assert torch.all(row[seen] < 16)  # every visible cell receives one


def test_puzzlemix_without_prior_or_smoothness_shows_the_more_salient_block():
    # Image i is salient only in block i of a 2×2 grid; with no prior and no smoothness each
    # block must show whichever of the pair is salient there.
    saliency = torch.full((4, 16, 16), 0.01)
    for i in range(4):
        saliency[i, 8 * (i // 2) : 8 * (i // 2) + 8, 8 * (i % 2) : 8 * (i % 2) + 8] = 1.0
    checked = 0
    for seed in range(8):
        torch.manual_seed(seed)
        _, mixed_targets, masks = puzzlemix(
            torch.randn(4, 3, 16, 16),
            torch.eye(4),
            saliency,
            block_nums=(2,),
            beta=0.0,
            gamma=0.0,
            eta=0.0,
            transport=False,
        )
        blocks = masks[:, 0, ::8, ::8].flatten(1)  # share of x in each of the 4 blocks
        for i in range(4):
            partner = int((mixed_targets[i] - torch.eye(4)[i]).argmax())
            if mixed_targets[i, i] < 1:
                assert blocks[i, i] == 1 and blocks[i, partner] == 0
                checked += 1
    assert checked > 0


@pytest.mark.parametrize("channels,batch", [(1, 1), (3, 5)])
def test_puzzlemix_step_keeps_train_mode_and_trains(make_backbone, channels, batch):
    model = make_backbone(in_chans=channels).train()
    method = PuzzleMix(num_classes=10)
    torch.manual_seed(0)
    images, labels = torch.randn(batch, channels, 16, 16), torch.randint(10, (batch,))
    loss, _ = method.training_step(model, images, labels, step=0)
    loss.backward()
    assert torch.isfinite(loss) and model.training
    assert all(p.grad is not None for p in model.parameters())
    titles = [title for title, _ in method.sample_grid(model, images, labels).rows]
    assert titles == ["input", "mask: share of the input", "mixed"]


def test_puzzlemix_explains_image_sizes_it_cannot_tile():
    with pytest.raises(ValueError, match="square"):
        block_counts(16, 32, (2, 4))
    with pytest.raises(ValueError, match="block_nums"):
        block_counts(15, 15, (2, 4, 8, 16))
    assert block_counts(28, 28, (2, 4, 8, 16)) == [2, 4]
