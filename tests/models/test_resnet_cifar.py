from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from adautomix.models.resnet_cifar import BasicBlock, Bottleneck, StridedPointwiseConv

ROOT = Path(__file__).resolve().parents[2]

RESIDUAL_NETS = ("resnet18", "resnet50", "resnext50")


def _blocks(model):
    return [m for m in model.modules() if isinstance(m, (BasicBlock, Bottleneck))]


def _last_bn(block):
    return block.bn2 if isinstance(block, BasicBlock) else block.bn3


@pytest.mark.parametrize("name, stage3", [("resnet18", (256, 8, 8)), ("resnext50", (1024, 8, 8))])
def test_stage3_on_cifar_is_the_generators_input(build, name, stage3):
    with torch.no_grad():
        h = build(name).eval().features(torch.randn(2, 3, 32, 32), upto=3)
    assert h.shape == (2, *stage3)


def test_grey_28px_shapes(build):
    model = build("resnet18", in_chans=1).eval()
    with torch.no_grad():
        shapes = [model.features(torch.randn(2, 1, 28, 28), upto=k).shape[1:] for k in range(5)]
    assert shapes == [(64, 28, 28), (64, 28, 28), (128, 14, 14), (256, 7, 7), (512, 4, 4)]


@pytest.mark.parametrize("name", RESIDUAL_NETS)
def test_fresh_blocks_pass_their_shortcut_through(build, name):
    """With the last BN at γ = 0 the residual branch outputs 0, so a block computes
    relu(shortcut(x)); inputs are post-ReLU, so a block without projection is the identity."""
    model = build(name).eval()
    with torch.no_grad():
        h = model.features(torch.randn(2, 3, 32, 32), upto=0)
        for stage in model.stages:
            for block in stage:
                expected = h if block.shortcut is None else torch.relu(block.shortcut(h))
                out = block(h)
                assert torch.equal(out, expected)
                h = out


@pytest.mark.parametrize("name", RESIDUAL_NETS)
def test_batchnorm_init(build, name):
    model = build(name)
    last = {id(_last_bn(block)) for block in _blocks(model)}
    assert len(last) == len(_blocks(model)) > 0
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            assert torch.all(module.weight == (0.0 if id(module) in last else 1.0))
            assert not module.bias.any()


def test_convs_are_kaiming_normal_fan_out(build):
    conv = build("resnet18").stages[3][1].conv2  # 512×512×3×3: a precise estimate
    expected = math.sqrt(2.0 / (conv.out_channels * 9))
    assert abs(conv.weight.std().item() / expected - 1.0) < 0.01
    assert abs(conv.weight.mean().item()) < 0.01 * expected


def test_resnext_blocks_are_32_groups_of_4_channels(build):
    model = build("resnext50")
    first = model.stages[0][0]
    assert (first.conv2.groups, first.conv2.in_channels) == (32, 128)
    assert model.stages[3][0].conv2.in_channels == 32 * 4 * 8


@pytest.mark.parametrize("size", [28, 7])
def test_the_strided_shortcut_computes_a_strided_1x1_conv(size):
    shortcut = StridedPointwiseConv(8, 16, 1, 2, bias=False)
    reference = nn.Conv2d(8, 16, 1, 2, bias=False)
    reference.weight.data.copy_(shortcut.weight.data)
    x = torch.randn(3, 8, size, size)
    ours, theirs = shortcut(x), reference(x)  # NCHW: PyTorch's own strided kernel
    assert ours.shape == theirs.shape == (3, 16, (size + 1) // 2, (size + 1) // 2)
    torch.testing.assert_close(ours, theirs)
    grad = torch.randn_like(ours)
    (ours_grad,) = torch.autograd.grad(ours, shortcut.weight, grad)
    (theirs_grad,) = torch.autograd.grad(theirs, reference.weight, grad)
    torch.testing.assert_close(ours_grad, theirs_grad)


def test_a_narrow_network_trains_in_channels_last_at_an_odd_batch():
    # PyTorch's strided 1×1 weight-gradient kernel aborts the process for this shape, so the step
    # runs in a child: a crash there is a failure here, not a dead test session.
    step = (
        "import torch; from adautomix.models import create_model;"
        "m = create_model('resnet18', 10, in_chans=1, "
        "width=8).to(memory_format=torch.channels_last);"
        "x = torch.randn(25, 1, 28, 28).to(memory_format=torch.channels_last);"
        "[m(x).sum().backward() for _ in range(3)]; print('trained')"
    )
    child = subprocess.run(
        [sys.executable, "-c", step],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        },
    )
    assert child.returncode == 0 and child.stdout.strip() == "trained", child.stderr[-2000:]
