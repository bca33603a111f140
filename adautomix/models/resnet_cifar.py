"""ResNet and ResNeXt for small images (28 to 64 px), as mmcls' ResNet_CIFAR that the paper trains.

The ImageNet stem (7×7 stride-2 conv and a max-pool) would shrink a 32 px image to 8 px before the
first block, so the stem is a single 3×3 stride-1 conv and the four stages have strides 1, 2, 2, 2:
a 32 px input gives maps of 32, 16, 8 and 4 px, and stage 3 of ResNet-18 is the 256×8×8 map that
AdAutoMix's generator reads.

Initialisation follows mmcls (spec §1): Kaiming-normal convs (fan_out, relu), BN weight 1 and
bias 0 (PyTorch's default), and the last BN of every residual block at γ = 0, so each block starts
as the identity and the untrained network is shallow.

`width` is the stem's and first stage's channel count (64 in the paper; the stages double it):
width 16 is a sixteenth of the compute, a network that learns Fashion-MNIST in a few minutes on
two CPU cores, which the quickstart preset trains.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import Backbone, kaiming_init_convs, linear_head

STAGE_WIDTHS = (64, 128, 256, 512)
DEFAULT_WIDTH = STAGE_WIDTHS[0]


class StridedPointwiseConv(nn.Conv2d):
    """A 1×1 conv with a stride, run as a stride-1 1×1 conv of the subsampled input: the same
    maths (a 1×1 kernel at stride s reads every s-th pixel) and the same parameters. PyTorch's CPU
    kernel for the weight gradient of a strided 1×1 conv in channels_last corrupts the heap for
    few channels (8 -> 16 at batch 25 aborts the process), which the width option reaches."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows, cols = self.stride
        return F.conv2d(x[:, :, ::rows, ::cols], self.weight, self.bias)


def _shortcut(in_chs: int, out_chs: int, stride: int) -> nn.Module | None:
    if stride == 1 and in_chs == out_chs:
        return None
    return nn.Sequential(
        StridedPointwiseConv(in_chs, out_chs, 1, stride, bias=False), nn.BatchNorm2d(out_chs)
    )


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(
        self, in_chs: int, planes: int, stride: int = 1, groups: int = 1, width_per_group: int = 64
    ):
        super().__init__()
        if groups != 1 or width_per_group != 64:
            raise ValueError("BasicBlock has no grouped variant; use Bottleneck for ResNeXt")
        self.conv1 = nn.Conv2d(in_chs, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        nn.init.zeros_(self.bn2.weight)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = _shortcut(in_chs, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1×1 reduce, 3×3 (grouped for ResNeXt; it carries the stride, as torchvision's "v1.5"),
    1×1 expand."""

    expansion = 4

    def __init__(
        self, in_chs: int, planes: int, stride: int = 1, groups: int = 1, width_per_group: int = 64
    ):
        super().__init__()
        width = planes * width_per_group // 64 * groups
        out_chs = planes * self.expansion
        self.conv1 = nn.Conv2d(in_chs, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_chs, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_chs)
        nn.init.zeros_(self.bn3.weight)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = _shortcut(in_chs, out_chs, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNetCIFAR(Backbone):
    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        depths: tuple[int, ...],
        num_classes: int,
        in_chans: int = 3,
        groups: int = 1,
        width_per_group: int = 64,
        width: int = DEFAULT_WIDTH,
    ):
        super().__init__()
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        widths = tuple(w * width // DEFAULT_WIDTH for w in STAGE_WIDTHS)
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, widths[0], 3, 1, 1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        stages, in_chs = [], widths[0]
        for index, (planes, depth) in enumerate(zip(widths, depths)):
            blocks = []
            for position in range(depth):
                stride = 2 if index > 0 and position == 0 else 1
                blocks.append(block(in_chs, planes, stride, groups, width_per_group))
                in_chs = planes * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.head = linear_head(in_chs, num_classes)
        self.num_features = in_chs
        self.stage_channels = tuple(w * block.expansion for w in widths)
        self.stage_strides = (1, 2, 4, 8)
        self.in_chans = in_chans
        self.num_classes = num_classes
        kaiming_init_convs(self)


def resnet18(num_classes: int, in_chans: int = 3, width: int = DEFAULT_WIDTH) -> ResNetCIFAR:
    return ResNetCIFAR(BasicBlock, (2, 2, 2, 2), num_classes, in_chans, width=width)


def resnet34(num_classes: int, in_chans: int = 3, width: int = DEFAULT_WIDTH) -> ResNetCIFAR:
    return ResNetCIFAR(BasicBlock, (3, 4, 6, 3), num_classes, in_chans, width=width)


def resnet50(num_classes: int, in_chans: int = 3, width: int = DEFAULT_WIDTH) -> ResNetCIFAR:
    return ResNetCIFAR(Bottleneck, (3, 4, 6, 3), num_classes, in_chans, width=width)


def resnext50_32x4d(num_classes: int, in_chans: int = 3, width: int = DEFAULT_WIDTH) -> ResNetCIFAR:
    # The grouped width scales with the stage width: 32 groups of width/16 channels each.
    if width % 16:
        raise ValueError(
            f"resnext50 needs a width that is a multiple of 16 (32 groups of "
            f"width/16 channels), got {width}"
        )
    return ResNetCIFAR(
        Bottleneck, (3, 4, 6, 3), num_classes, in_chans, groups=32, width_per_group=4, width=width
    )
