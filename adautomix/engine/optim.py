"""Optimiser and learning-rate schedule.

The lr is a pure function of (epoch, step), so resuming needs no scheduler state: the value at
any step is recomputed from the config, the same way every time."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from ..config import RunConfig


def build_optimizer(config: RunConfig, params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    params = list(params)
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum,
                               weight_decay=config.weight_decay)
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


def lr_at(config: RunConfig, step: int, steps_per_epoch: int) -> float:
    """Linear warm-up per iteration, then cosine from lr down to the floor min_lr.

    With lr_schedule_by="epoch" the cosine moves once per epoch, e = 0..E−1, as mmcv's
    CosineAnnealing(by_epoch) does in the official recipes; "step" anneals every iteration."""
    warmup_steps = config.warmup_epochs * steps_per_epoch
    if step < warmup_steps:
        return config.lr * (step + 1) / warmup_steps
    progress = step / steps_per_epoch
    if config.lr_schedule_by == "epoch":
        progress = math.floor(progress)
    t = (progress - config.warmup_epochs) / (config.epochs - config.warmup_epochs)
    return config.min_lr + (config.lr - config.min_lr) * (1.0 + math.cos(math.pi * max(t, 0.0))) / 2.0


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
