"""The train step: train a configuration in a checkpoint folder named by what it computes, so a
retried or re-run step resumes there instead of starting over."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ..config import RunConfig
from .checks import build_config

# Fields that say where or how visibly a run happens, not what it computes: they stay out of the
# checkpoint key, so a re-run resumes whatever the run name, data location or worker count.
UNKEYED_FIELDS = ("output_dir", "data_root", "run_name", "progress", "num_workers")


def checkpoint_dir(root: str | Path, config: RunConfig, data_version: str) -> Path:
    """A folder named by what the run computes, so that a retried or re-run step with the same
    parameters and data finds its own checkpoint and resumes instead of starting over."""
    keyed = {k: v for k, v in config.to_dict().items() if k not in UNKEYED_FIELDS}
    text = json.dumps({"config": keyed, "data_version": data_version}, sort_keys=True)
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    return Path(root) / f"{config.dataset}-{config.model}-{config.method}-seed{config.seed}-{digest}"


def train_step(checkpoint_root: str | Path, data_version: str, preset: str = "", **values: Any):
    """Train the configuration `build_config(preset, **values)` in its persistent checkpoint
    folder under `checkpoint_root`, resuming from the checkpoint there if there is one."""
    from ..engine.train import train

    config = build_config(preset, **values)
    out = checkpoint_dir(checkpoint_root, config, data_version)
    return train(config.replace(output_dir=str(out)), resume=True)
