"""Occlusion: ratio 0 is clean top-1, the same patches hide every image of a batch, the count
of hidden patches is round(ratio·P), the patch scales with the image, a seed reproduces it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from adautomix.config import ConfigError
from adautomix.eval import evaluate
from adautomix.eval.occlusion import Occlusion, patch_size
from tests.tiny_backbone import TinyBackbone


class Recorder(nn.Module):
    """Remembers what it was shown; predicts class 0."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, images):
        self.seen.append(images.clone())
        return torch.zeros(images.shape[0], 3)


def ones_loader(batches=2, batch=4, size=28):
    return [
        (torch.ones(batch, 1, size, size), torch.zeros(batch, dtype=torch.long))
        for _ in range(batches)
    ]


def test_ratio_0_is_clean_top1():
    torch.manual_seed(0)
    network = TinyBackbone(num_classes=3, in_chans=1).eval()
    generator = torch.Generator().manual_seed(1)
    loader = [
        (
            torch.randn(8, 1, 28, 28, generator=generator),
            torch.randint(0, 3, (8,), generator=generator),
        )
        for _ in range(3)
    ]
    values = evaluate(network, loader, ["top1", Occlusion(ratios=[0.0, 0.5])])
    assert values["occlusion_top1_r0"] == values["top1"]


def test_the_same_patches_hide_every_image_of_a_batch_and_their_count_is_round_r_p():
    recorder = Recorder()
    Occlusion(ratios=[0.3]).run(recorder, ones_loader())
    for shown in recorder.seen:  # one per batch
        hidden = shown == 0
        assert all(torch.equal(hidden[0], h) for h in hidden[1:])
        # 28 px: 2 px patches, 14 × 14 = 196 of them; round(0.3 · 196) = 59 hidden
        assert int(hidden[0].sum()) == 59 * 2 * 2
    assert not torch.equal(recorder.seen[0] == 0, recorder.seen[1] == 0)  # batches differ


def test_a_seed_reproduces_the_occlusions_and_another_seed_changes_them():
    first, again, other = Recorder(), Recorder(), Recorder()
    Occlusion(ratios=[0.5], seed=3).run(first, ones_loader())
    Occlusion(ratios=[0.5], seed=3).run(again, ones_loader())
    Occlusion(ratios=[0.5], seed=4).run(other, ones_loader())
    assert all(torch.equal(a, b) for a, b in zip(first.seen, again.seen))
    assert not torch.equal(first.seen[0], other.seen[0])


def test_the_paper_patch_at_224_and_scaled_ones_below():
    assert patch_size(224) == 16  # 14 × 14 = 196 patches, the paper's
    assert (patch_size(28), patch_size(32), patch_size(64)) == (2, 2, 4)


def test_full_occlusion_hides_everything_and_the_curve_draws():
    recorder = Recorder()
    metric = Occlusion(ratios=[0.0, 1.0])
    values = metric.run(recorder, ones_loader(batches=1, size=32))
    assert (recorder.seen[-1] == 0).all() and (recorder.seen[0] == 1).all()
    assert values["occlusion_top1_mean"] == 100.0  # the recorder always answers the label 0
    assert metric.figure().axes[0].get_xlabel() == "occlusion ratio"


@pytest.mark.parametrize("options", [dict(ratios=[1.5]), dict(ratios=[]), dict(patch=-1)])
def test_bad_options_are_refused(options):
    with pytest.raises(ConfigError, match="occlusion"):
        Occlusion(**options)
