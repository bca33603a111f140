from __future__ import annotations

import torch
from torch import nn

from adautomix.models.preact_resnet import PreActBlock


def test_fresh_blocks_pass_their_shortcut_through(build):
    """The last conv of each block starts at zero, so a block returns its input (any sign: there
    is no ReLU after the sum) or, where it changes shape, the 1×1 projection of BN-ReLU(input)."""
    model = build("preactresnet18").eval()
    with torch.no_grad():
        h = model.features(torch.randn(2, 3, 32, 32), upto=0)
        assert (h < 0).any()
        for stage in model.stages:
            for block in stage:
                if block.shortcut is None:
                    expected = h
                else:
                    expected = block.shortcut(torch.relu(block.bn1(h)))
                out = block(h)
                assert torch.equal(out, expected)
                h = out


def test_puzzlemix_layout(build):
    model = build("preactresnet18")
    assert isinstance(model.stem, nn.Conv2d)  # the first block normalises it
    blocks = [m for m in model.modules() if isinstance(m, PreActBlock)]
    assert len(blocks) == 8
    projections = [b.shortcut for b in blocks if b.shortcut is not None]
    assert len(projections) == 3 and all(isinstance(p, nn.Conv2d) for p in projections)


def test_final_bn_relu_is_in_pre_logits(build):
    model = build("preactresnet18").eval()
    with torch.no_grad():
        h = model.features(torch.randn(2, 3, 32, 32))
        pooled = model.pre_logits(h)
    assert (h < 0).any()  # stages return the raw residual stream
    expected = torch.relu(model.final_norm(h)).mean(dim=(2, 3))
    assert pooled.shape == (2, 512) and torch.allclose(pooled, expected)
