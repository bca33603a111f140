"""Checkpoints: written atomically at every epoch's end and every `checkpoint_minutes` within
an epoch, with enough state to resume exactly.

The file holds the model, the method (its generator, heads and EMA teacher are submodules), the
engine's EMA, the optimiser, the AMP scaler, every RNG stream the run draws from, the epoch and
step counters, the metric history (for the median of the last epochs), the MLflow run id, the
run's config and the code version that wrote it. A checkpoint taken within an epoch also holds
how many of its batches are done and their running loss sums (`epoch_step`, `epoch_totals`). The
lr needs no state: it is a function of the step (engine/optim.py).

Everything in it is a tensor or a plain Python value (numbers, strings, lists, tuples, dicts), so
it loads with torch's weights-only unpickler: a file that holds anything else (a crafted pickle
that would run code on load) is refused before any of it runs."""

from __future__ import annotations

import contextlib
import errno
import os
import pickle
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from ..config import ConfigError, RunConfig, resume_changes
from ..errors import InputError, RunFailure
from ..provenance import code_version

CHECKPOINT_NAME = "checkpoint.pt"
# The networks of the epoch selected on the validation split (engine/train.py), beside the
# latest checkpoint: what the evaluate step measures and the registry serves.
SELECTED_NAME = "selected.pt"
# What a write in progress is called; a kill mid-write leaves one behind (see
# remove_partial_writes).
TEMP_PREFIX, TEMP_SUFFIX = ".checkpoint-", ".tmp"
# What a checkpoint must hold to be restored, and the type of each entry: the networks alone for
# evaluation (selected.pt holds no more), everything for a resume. Anything else (a bare
# tensor, a dict from an older version) is refused with a CheckpointError, not a traceback.
NETWORK_KEYS = {"model": dict, "method": dict, "ema": (dict, type(None)), "epoch": int}
RESUME_KEYS = {
    **NETWORK_KEYS,
    "optimizer": dict,
    "scaler": dict,
    "rng": dict,
    "step": int,
    "history": list,
    "run_id": (str, type(None)),
    "config": dict,
}


class CheckpointError(InputError):
    """A checkpoint that cannot be used; the message names the file and what to do."""


def rng_state() -> dict[str, Any]:
    """Every random stream as tensors and plain values (numpy's key array becomes a tensor)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    keys = keys.numpy() if isinstance(keys, torch.Tensor) else np.asarray(keys)
    np.random.set_state((kind, keys.astype(np.uint32), pos, has_gauss, gauss))
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


def save_checkpoint(
    state: dict[str, Any], directory: str | Path, name: str = CHECKPOINT_NAME
) -> Path:
    """Write to a temporary file in the same folder, fsync, then rename over the old checkpoint,
    so a crash at any moment leaves either the old or the new checkpoint, never half of one. A
    full disk is a CheckpointWriteError naming the folder, its free space and the fix."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / name
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX, dir=directory)
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        if isinstance(exc, Exception) and _no_space(exc):
            raise _disk_full(target) from None  # torch's own error hides the cause in its context
        raise
    return target


class CheckpointWriteError(RunFailure):
    """A checkpoint that could not be written (a full disk); the one before it is intact."""


# A full disk, and a full quota: the same for the user, free space or write elsewhere.
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def _no_space(exc: BaseException) -> bool:
    """Whether `exc`, or what it was raised from or during, is a full disk: torch's writer turns
    the OSError of a failed write into `RuntimeError: [enforce fail at inline_container.cc]
    unexpected pos`, with the OSError as its context."""
    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        if isinstance(exc, OSError) and exc.errno in NO_SPACE:
            return True
        if "No space left on device" in str(exc) or "Disk quota exceeded" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _disk_full(target: Path) -> CheckpointWriteError:
    free = _size(shutil.disk_usage(target.parent).free)
    if target.exists():  # the rename never happened: the last one written stands
        needed = _size(target.stat().st_size)
        return CheckpointWriteError(
            f"no space left to write {target.name} in {target.parent} ({free} free, it needs "
            f"about {needed}); the previous {target.name} is intact. Free space there (or move "
            "the folder to a larger disk), then start it again with --resume to continue from "
            "the last checkpoint"
        )
    return CheckpointWriteError(
        f"no space left to write {target.name} in {target.parent} ({free} free). Free space "
        "there, or train into an --output-dir on a larger disk"
    )


def _size(count: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if count < 1024:
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TiB"


def remove_partial_writes(directory: str | Path) -> list[Path]:
    """Delete what a write killed before its rename left behind (a SIGKILL runs no cleanup), so
    that an interrupted run does not keep a checkpoint-sized temporary file forever. Call it
    when a run starts, before it writes; returns what it removed."""
    removed = []
    for path in Path(directory).glob(f"{TEMP_PREFIX}*{TEMP_SUFFIX}"):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path)
    return removed


def load_checkpoint(
    directory: str | Path,
    map_location: str | torch.device = "cpu",
    name: str = CHECKPOINT_NAME,
    keys: dict[str, type | tuple] | None = None,
) -> dict[str, Any] | None:
    """The checkpoint in `directory`, or None if there is none. Only tensors and plain values are
    unpickled: anything else is refused with a CheckpointError, and none of it runs. `keys`
    (NETWORK_KEYS, RESUME_KEYS): what it must hold, of which types, else a CheckpointError."""
    path = Path(directory) / name
    if not path.exists():
        return None
    state = _read(path, map_location)
    if keys is not None:
        check_contents(state, path, keys)
    return state


def check_contents(state: Any, path: Path, keys: dict[str, type | tuple]) -> None:
    """A CheckpointError naming the file and what it lacks unless `state` is a dict holding
    `keys`, each of its type."""
    if not isinstance(state, dict):
        what = f"a {type(state).__name__}"
    else:
        missing = [k for k in keys if k not in state]
        wrong = [
            f"{k} is a {type(state[k]).__name__}"
            for k, kind in keys.items()
            if k in state and not isinstance(state[k], kind)
        ]
        if not missing and not wrong:
            return
        what = "; ".join(filter(None, [f"no {', '.join(missing)}" if missing else "", *wrong]))
    raise CheckpointError(
        f"checkpoint {path} is not a training checkpoint of this version of adautomix ({what}); "
        "it was not used. Train into a new --output-dir, or delete it to start over there"
    )


def _read(path: Path, map_location: str | torch.device) -> Any:
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's message names the refused global, e.g. "Unsupported global: GLOBAL os.system"
        reason = next(
            (
                line.strip()
                for line in str(exc).splitlines()
                if "Unsupported" in line or "global" in line.lower()
            ),
            str(exc).splitlines()[0],
        )
        raise CheckpointError(
            f"checkpoint {path} is not one adautomix wrote: it holds something other than "
            f"tensors and plain values ({reason}); it was not loaded and nothing in it ran. "
            "Only load checkpoints you wrote; delete it to start over, or restore it from the "
            "artifact store"
        ) from None
    except Exception as exc:  # a damaged file must say which file and what to do
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else 'no detail'}); delete it to start over, "
            "or restore it from the artifact store"
        ) from None


def check_resume(
    state: dict[str, Any], config: RunConfig, directory: str | Path, allow_code_change: bool = False
) -> dict:
    """The changes `config` makes to the config the checkpoint was written under, all of them
    allowed (RESUMABLE_FIELDS), as {field: (saved, new)}; a ConfigError listing every field
    that would change what is computed, or an epoch count below what is already done.

    The code that wrote the checkpoint must be this code (provenance.code_version): another one
    may compute something else, so a resume under it is a CheckpointError unless
    `allow_code_change`, and then it is one more change, {"code_version": (saved, now)}."""
    path = Path(directory) / CHECKPOINT_NAME
    check_contents(state, path, RESUME_KEYS)
    allowed, refused = resume_changes(state["config"], config)
    if refused:
        shown = "; ".join(
            f"{k} {old!r} in the checkpoint, {new!r} now"
            for k, (old, new) in sorted(refused.items())
        )
        raise ConfigError(
            f"--resume: {path} was trained under another config ({shown}); these change what "
            f"is computed. Resume with the checkpoint's values "
            f"(--config {Path(directory) / 'config.json'}"
            f" plus only epochs, workers or logging flags), or train into a new --output-dir"
        )
    # a checkpoint within an epoch has started one more than it has done
    begun = state["epoch"] + (1 if state.get("epoch_step") else 0)
    if config.epochs < begun:
        raise ConfigError(
            f"--resume: epochs {config.epochs} is fewer than the {begun} the "
            f"checkpoint has {'begun' if state.get('epoch_step') else 'done'}; "
            f"pass --epochs {begun} or more"
        )
    saved, now = state.get("code_version", UNRECORDED), code_version()
    if saved != now:
        if not allow_code_change:
            raise CheckpointError(
                f"--resume: {path} was written by code version {saved}, this is {now}; other "
                "code may compute something else. Train into a new --output-dir, or pass "
                "--allow-code-change to continue it under this code (recorded in the run)"
            )
        allowed = {**allowed, "code_version": (saved, now)}
    return allowed


# The code version of a checkpoint written before checkpoints recorded it.
UNRECORDED = "unrecorded"
