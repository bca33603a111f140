"""PreActResNet-18 for small images (He et al. 2016, "Identity Mappings in Deep Residual Networks").

The CIFAR variant of the mixup papers (PuzzleMix, Co-Mixup): a bare 3×3 stride-1 stem conv, four
stages of pre-activation blocks (BN-ReLU-conv twice) with strides 1, 2, 2, 2 and widths 64-512,
a projection shortcut that is a plain 1×1 conv taken from the pre-activated input, and a final
BN-ReLU before pooling.

Where the final BN-ReLU lives: the stages carry the un-normalised residual stream, as every
pre-activation network does, so the last BN-ReLU belongs to the readout and sits in `pre_logits`,
as the final norm does for the wrapped ConvNeXt and Swin. `features(x, k)` is then the raw
output of stage k for every k, which is what mixing between stages (ManifoldMix) needs.

Initialisation: the CIFAR ResNets zero the γ of each block's last BN so that every block starts as
the identity (spec §1). A pre-activation block has no BN after its last conv, so the same effect is
obtained by zeroing that last conv: the residual branch outputs 0 and the block passes its input
through (or its 1×1 projection). Other convs are Kaiming-normal (fan_out, relu), the head is
N(0, 0.01²).
"""

from __future__ import annotations

import torch
from torch import nn

from .backbone import Backbone, kaiming_init_convs, linear_head

STAGE_WIDTHS = (64, 128, 256, 512)


class PreActBlock(nn.Module):
    def __init__(self, in_chs: int, planes: int, stride: int = 1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_chs)
        self.conv1 = nn.Conv2d(in_chs, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = (
            None
            if stride == 1 and in_chs == planes
            else nn.Conv2d(in_chs, planes, 1, stride, bias=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(x))
        identity = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(self.relu(self.bn2(out)))
        return out + identity


class PreActResNet(Backbone):
    def __init__(self, depths: tuple[int, ...], num_classes: int, in_chans: int = 3):
        super().__init__()
        self.stem = nn.Conv2d(in_chans, STAGE_WIDTHS[0], 3, 1, 1, bias=False)
        stages, in_chs = [], STAGE_WIDTHS[0]
        for index, (planes, depth) in enumerate(zip(STAGE_WIDTHS, depths)):
            blocks = []
            for position in range(depth):
                stride = 2 if index > 0 and position == 0 else 1
                blocks.append(PreActBlock(in_chs, planes, stride))
                in_chs = planes
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.final_norm = nn.BatchNorm2d(in_chs)
        self.head = linear_head(in_chs, num_classes)
        self.num_features = in_chs
        self.stage_channels = STAGE_WIDTHS
        self.stage_strides = (1, 2, 4, 8)
        self.in_chans = in_chans
        self.num_classes = num_classes
        kaiming_init_convs(self)
        for module in self.modules():
            if isinstance(module, PreActBlock):
                nn.init.zeros_(module.conv2.weight)

    def pre_logits(self, h: torch.Tensor) -> torch.Tensor:
        h = nn.functional.relu(self.final_norm(h))
        return torch.flatten(nn.functional.adaptive_avg_pool2d(h, 1), 1)


def preact_resnet18(num_classes: int, in_chans: int = 3) -> PreActResNet:
    return PreActResNet((2, 2, 2, 2), num_classes, in_chans)
