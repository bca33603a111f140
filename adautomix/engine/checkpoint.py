"""Checkpoints: written atomically every epoch, and enough state to resume exactly.

The file holds the model, the method (its generator, heads and EMA teacher are submodules), the
engine's EMA, the optimiser, the AMP scaler, every RNG stream the run draws from, the epoch and
step counters, the metric history (for the median of the last epochs) and the MLflow run id. The
lr needs no state: it is a function of the step (engine/optim.py)."""

from __future__ import annotations

import contextlib
import os
import random
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

CHECKPOINT_NAME = "checkpoint.pt"
# The networks of the epoch selected on the validation split (engine/train.py), beside the
# latest checkpoint: what the evaluate step measures and the registry serves.
SELECTED_NAME = "selected.pt"


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
             "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@contextlib.contextmanager
def preserved_rng() -> Iterator[None]:
    """Run side work (sample grids) without moving the training run's random streams."""
    saved = rng_state()
    try:
        yield
    finally:
        set_rng_state(saved)


def save_checkpoint(state: dict[str, Any], directory: str | Path,
                    name: str = CHECKPOINT_NAME) -> Path:
    """Write to a temporary file in the same folder, fsync, then rename over the old checkpoint,
    so a crash at any moment leaves either the old or the new checkpoint, never half of one."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / name
    fd, tmp = tempfile.mkstemp(prefix=".checkpoint-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return target


def load_checkpoint(directory: str | Path, map_location: str | torch.device = "cpu",
                    name: str = CHECKPOINT_NAME) -> dict[str, Any] | None:
    path = Path(directory) / name
    if not path.exists():
        return None
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # a damaged file must say which file and what to do
        raise RuntimeError(
            f"checkpoint {path} cannot be read ({exc}); delete it to start over, "
            "or restore it from the artifact store") from exc
