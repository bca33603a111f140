"""Backbone: every model is a stem, a list of stages and a head.

Mixing methods need to run part of a network: ManifoldMix mixes between stages and AdAutoMix's
generator reads stage 3 of the EMA network. So every model, ours and torchvision's, is exposed
through the same small interface:

    features(x, upto=k)   feature map after stage k (k = 0 is the stem's output), NCHW
    forward_from(h, k)    continue from the output of stage k to the logits
    pre_logits(h)         pooled vector from the last stage's map (what the head reads)
    forward(x)            the whole net
"""

from __future__ import annotations

import torch
from torch import nn


class Backbone(nn.Module):
    """Subclasses set `stem`, `stages` (ModuleList), `head` (Linear) and the attributes below."""

    stem: nn.Module
    stages: nn.ModuleList
    head: nn.Linear
    num_features: int  # width of pre_logits(), i.e. head.in_features
    stage_channels: tuple[int, ...]  # channels after stage 1..S
    stage_strides: tuple[int, ...]  # total input-to-feature stride after stage 1..S
    in_chans: int
    num_classes: int

    @property
    def num_stages(self) -> int:
        return len(self.stages)

    def _check_stage(self, k: int) -> None:
        if not 0 <= k <= self.num_stages:
            raise ValueError(
                f"{type(self).__name__} has stages 0..{self.num_stages} (0 is the stem); got {k}"
            )

    def features(self, x: torch.Tensor, upto: int | None = None) -> torch.Tensor:
        upto = self.num_stages if upto is None else upto
        self._check_stage(upto)
        h = self.stem(x)
        for stage in self.stages[:upto]:
            h = stage(h)
        return h

    def run_stages(self, h: torch.Tensor, start: int, stop: int | None = None) -> torch.Tensor:
        """Stages start+1..stop applied to the output of stage `start`."""
        stop = self.num_stages if stop is None else stop
        self._check_stage(start)
        self._check_stage(stop)
        for stage in self.stages[start:stop]:
            h = stage(h)
        return h

    def pre_logits(self, h: torch.Tensor) -> torch.Tensor:
        return torch.flatten(nn.functional.adaptive_avg_pool2d(h, 1), 1)

    def forward_from(self, h: torch.Tensor, start: int) -> torch.Tensor:
        return self.head(self.pre_logits(self.run_stages(h, start)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_from(self.stem(x), 0)


# Every kind of BatchNorm (a LazyBatchNorm becomes one of these at its first call). Named once
# because two parts must agree on it: AdAutoMix's teacher replays the running-statistic updates of
# these layers, and a distributed run averages their statistics over ranks.
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def running_stat_batch_norms(net: nn.Module) -> list[nn.Module]:
    """The BatchNorm layers of `net` that keep running statistics (the ones evaluation uses)."""
    return [m for m in net.modules() if isinstance(m, BATCH_NORMS) and m.track_running_stats]


def kaiming_init_convs(net: nn.Module) -> None:
    """He-normal (fan-out) weights for every conv, as torchvision's ResNets start."""
    for module in net.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")


def linear_head(num_features: int, num_classes: int) -> nn.Linear:
    """The classifier every model ends with, initialised as mmcls' heads: N(0, 0.01²), bias 0.

    Small weights make the first logits nearly equal, so training starts at a loss of ~log(C)."""
    head = nn.Linear(num_features, num_classes)
    nn.init.normal_(head.weight, std=0.01)
    nn.init.zeros_(head.bias)
    return head
