"""A run's numeric precision (RunConfig.precision): fp32, as the paper trained, or autocast to
bf16 or fp16 around the training step's and evaluation's forward passes. bf16 keeps fp32's
exponent range, so it needs no loss scaling and runs on the CPU too; fp16 needs a GradScaler
(its state is in the checkpoint) and CUDA. fp32 runs with no autocast context at all, so its
figures are exactly those of a run before this option existed."""

from __future__ import annotations

import contextlib

import torch

from .config import PRECISIONS, ConfigError

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision: str, device: torch.device | str) -> None:
    """A ConfigError when `precision` cannot run on `device` (fp16 off CUDA), naming the fix."""
    device_type = torch.device(device).type
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    if precision == "fp16" and device_type != "cuda":
        raise ConfigError(
            f"precision fp16 needs a CUDA device (this run is on {device_type}); "
            "use --precision bf16 or fp32 there"
        )


def autocast(precision: str, device_type: str):
    """The context a forward pass runs in: nothing for fp32, autocast to bf16 or fp16 else."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type, dtype=DTYPES[precision])


def grad_scaler(precision: str, device_type: str) -> torch.amp.GradScaler:
    """Loss scaling for fp16, whose small gradients underflow; a disabled scaler otherwise."""
    return torch.amp.GradScaler(device_type, enabled=precision == "fp16")
