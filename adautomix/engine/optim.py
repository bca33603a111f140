"""Optimiser, parameter groups and learning-rate schedule.

The lr is a pure function of (epoch, step), so resuming needs no scheduler state: the value at
any step is recomputed from the config, the same way every time.

The official recipes beyond CIFAR give the mix block its own learning rate and cosine floor, and
the ViT recipes exempt norms, biases and position tables from weight decay (spec §5.2). Each
parameter group therefore carries its own `lr_base` and `lr_floor`, and every group follows the
same warm-up and cosine shape between them, as mmcv's per-group annealing does."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import nn

from ..config import RunConfig

# Parameters that mmcv's paramwise_cfg (norm_decay_mult=0, bias_decay_mult=0, custom_keys for
# position tables) keeps free of weight decay in the ViT recipes.
POSITION_TABLES = ("relative_position_bias_table", "absolute_pos_embed", "pos_embed", "cls_token")


def exempt_from_decay(name: str, param: nn.Parameter) -> bool:
    """Norm weights and biases (every 1-D parameter) and position tables."""
    return param.ndim <= 1 or any(table in name for table in POSITION_TABLES)


def param_groups(
    config: RunConfig,
    named_params: Iterable[tuple[str, nn.Parameter]],
    mix_block: Iterable[nn.Parameter] = (),
) -> list[dict]:
    """The optimiser's groups: main and (when config.mix_block_lr is set) mix block, each split
    into decayed and exempt parameters when config.exclude_norm_bias_decay is set. Empty groups
    are left out."""
    mix_ids = {id(p) for p in mix_block} if config.mix_block_lr else set()
    groups: dict[tuple[str, bool], dict] = {}
    for name, param in named_params:
        if not param.requires_grad:
            continue
        role = "mix_block" if id(param) in mix_ids else "main"
        decay = not (config.exclude_norm_bias_decay and exempt_from_decay(name, param))
        if (role, decay) not in groups:
            base, floor = (
                (config.mix_block_lr, config.mix_block_min_lr)
                if role == "mix_block"
                else (config.lr, config.min_lr)
            )
            groups[role, decay] = {
                "name": f"{role}{'' if decay else '_no_decay'}",
                "params": [],
                "lr": base,
                "lr_base": base,
                "lr_floor": floor,
                "weight_decay": config.weight_decay if decay else 0.0,
            }
        groups[role, decay]["params"].append(param)
    return list(groups.values())


def build_optimizer(config: RunConfig, groups: list[dict]) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            groups, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    return torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)


def lr_at(
    config: RunConfig,
    step: int,
    steps_per_epoch: int,
    base: float | None = None,
    floor: float | None = None,
) -> float:
    """Linear warm-up per iteration, then cosine from `base` down to `floor` (default: the
    config's lr and min_lr).

    With lr_schedule_by="epoch" the cosine moves once per epoch, e = 0..E−1, as mmcv's
    CosineAnnealing(by_epoch) does in the official recipes; "step" anneals every iteration."""
    base = config.lr if base is None else base
    floor = config.min_lr if floor is None else floor
    warmup_steps = config.warmup_epochs * steps_per_epoch
    if step < warmup_steps:
        return base * (step + 1) / warmup_steps
    progress = step / steps_per_epoch
    if config.lr_schedule_by == "epoch":
        progress = math.floor(progress)
    t = (progress - config.warmup_epochs) / (config.epochs - config.warmup_epochs)
    return floor + (base - floor) * (1.0 + math.cos(math.pi * max(t, 0.0))) / 2.0


def set_lr(
    optimizer: torch.optim.Optimizer, config: RunConfig, step: int, steps_per_epoch: int
) -> float:
    """Set every group's lr for this step; returns the main lr (what the logs show)."""
    for group in optimizer.param_groups:
        group["lr"] = lr_at(config, step, steps_per_epoch, group["lr_base"], group["lr_floor"])
    return lr_at(config, step, steps_per_epoch)


def optimizer_step(
    loss: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    grad_clip: float = 0.0,
    reduce_gradients: Callable[[list[nn.Parameter]], None] | None = None,
) -> None:
    """Backward, the gradients' reduction across ranks (`reduce_gradients`, for a distributed
    run), optional clipping of the global gradient norm (on the unscaled gradients, as mmcv's
    Fp16OptimizerHook does), then the step.

    The reduction sees the scaled gradients: a mean is linear, and an inf on one rank becomes an
    inf on every rank, so every rank's scaler skips the same steps."""
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    params = [p for group in optimizer.param_groups for p in group["params"]]
    if reduce_gradients is not None:
        reduce_gradients(params)
    if grad_clip:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    scaler.step(optimizer)
    scaler.update()
