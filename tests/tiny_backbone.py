"""The small 4-stage conv net the tests train instead of ResNet-18: the real Backbone interface
(stages, strides, channels, head), seconds where a ResNet-18 takes minutes on the CPU. Imported by
test modules and by the child processes some tests start."""

from __future__ import annotations

from torch import nn

from adautomix.models.backbone import Backbone


class TinyBackbone(Backbone):
    """A 4-stage conv net with the real Backbone interface, small enough for unit tests."""

    def __init__(self, num_classes: int = 10, in_chans: int = 3, width: int = 8):
        super().__init__()
        chans = (width, width * 2, width * 4, width * 8)
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()
        )
        stages, prev = [], width
        for i, c in enumerate(chans):
            stride = 1 if i == 0 else 2
            stages.append(
                nn.Sequential(
                    nn.Conv2d(prev, c, 3, stride, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU()
                )
            )
            prev = c
        self.stages = nn.ModuleList(stages)
        self.head = nn.Linear(prev, num_classes)
        self.num_features = prev
        self.stage_channels = chans
        self.stage_strides = (1, 2, 4, 8)
        self.in_chans = in_chans
        self.num_classes = num_classes
