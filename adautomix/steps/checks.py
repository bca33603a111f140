"""A run configuration built and checked before any data exists: what a pipeline checks when it
is compiled, and what each step checks again when it runs."""

from __future__ import annotations

from typing import Any

from ..config import ConfigError, RunConfig, upgrade_saved_config


def build_config(preset: str = "", **values: Any) -> RunConfig:
    """A preset's recipe (or the defaults when `preset` is empty) with `values` on top."""
    base: dict[str, Any] = {}
    if preset:
        from ..presets import get_preset
        base = get_preset(preset).to_dict()
    # Mapped until the pipeline layer passes today's names (issue 27 renamed the fields).
    return RunConfig.from_dict(upgrade_saved_config({**base, **values}, "the pipeline's values"))


def check_run(config: RunConfig, num_gpus: int = 0) -> None:
    """The checks RunConfig cannot make alone, made before any data exists: the method's options
    and smallest batch (by building the method on the configured network) and the GPU count."""
    from ..mixers import create_method
    from ..models import create_model

    if num_gpus < 0:
        raise ConfigError(f"num_gpus must be >= 0, got {num_gpus}")
    # Class and channel counts do not change which options or batch sizes a method accepts.
    model = create_model(config.model, num_classes=10, in_chans=3, width=config.model_width)
    method = create_method(config.method, model, 10, **config.method_args)
    smallest = getattr(method, "min_batch_size", 1)
    if config.batch_size < smallest:
        raise ConfigError(
            f"batch_size {config.batch_size} is smaller than method {config.method!r} needs "
            f"({smallest}: it mixes that many images into each sample); raise the batch size "
            "or lower the method's mix_samples")



