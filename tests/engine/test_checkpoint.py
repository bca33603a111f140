import os
import pickle
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from adautomix.engine.checkpoint import (
    CHECKPOINT_NAME,
    CheckpointError,
    CheckpointWriteError,
    load_checkpoint,
    preserved_rng,
    remove_partial_writes,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from adautomix.errors import exit_status
from tests.helpers import onto_a_full_disk


def test_save_is_atomic_and_leaves_no_temporaries(tmp_path):
    save_checkpoint({"a": torch.arange(3)}, tmp_path)
    save_checkpoint({"a": torch.arange(4)}, tmp_path)
    assert os.listdir(tmp_path) == [CHECKPOINT_NAME]
    assert torch.equal(load_checkpoint(tmp_path)["a"], torch.arange(4))


def test_failed_save_keeps_previous_checkpoint(tmp_path):
    save_checkpoint({"a": 1}, tmp_path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        save_checkpoint({"a": Unpicklable()}, tmp_path)
    assert load_checkpoint(tmp_path)["a"] == 1
    assert os.listdir(tmp_path) == [CHECKPOINT_NAME]


def test_missing_and_corrupt_checkpoints(tmp_path):
    assert load_checkpoint(tmp_path) is None
    (tmp_path / CHECKPOINT_NAME).write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="delete it to start over"):
        load_checkpoint(tmp_path)
    (tmp_path / CHECKPOINT_NAME).write_bytes(b"PK\x03\x04 truncated zip")
    with pytest.raises(CheckpointError, match=f"{CHECKPOINT_NAME} cannot be read"):
        load_checkpoint(tmp_path)


class WritesMarker:
    """What an attacker puts in a checkpoint: unpickling it runs a shell command."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("how", ["torch.save", "raw pickle"])
def test_a_crafted_checkpoint_is_refused_and_never_runs(tmp_path, how):
    marker = tmp_path / "code-ran"
    payload = {"model": {"w": torch.ones(2)}, "epoch": 1, "history": [WritesMarker(marker)]}
    if how == "torch.save":
        torch.save(payload, tmp_path / CHECKPOINT_NAME)
    else:
        (tmp_path / CHECKPOINT_NAME).write_bytes(pickle.dumps(payload))
    pickle.loads(pickle.dumps(WritesMarker(tmp_path / "control")))  # the payload is live
    assert (tmp_path / "control").exists()
    with pytest.raises(CheckpointError, match="nothing in it ran"):
        load_checkpoint(tmp_path)
    assert not marker.exists()


def test_a_whole_training_state_loads_weights_only(tmp_path):
    """What train() saves: modules, optimiser, scaler, every RNG stream, history, config."""
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    torch.manual_seed(3)
    np.random.seed(3)
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": torch.amp.GradScaler("cpu", enabled=False).state_dict(),
        "rng": rng_state(),
        "epoch": 1,
        "step": 10,
        "history": [{"epoch": 1, "val_top1": 12.5}],
        "run_id": "abc",
        "config": {"method_args": {"scope": [0.1, 0.8]}, "lr": 0.1},
    }
    expected = (torch.rand(2), np.random.rand(2))
    save_checkpoint(state, tmp_path)
    loaded = load_checkpoint(tmp_path)
    assert loaded["history"] == state["history"] and loaded["config"] == state["config"]
    set_rng_state(loaded["rng"])
    assert torch.equal(torch.rand(2), expected[0]) and np.array_equal(
        np.random.rand(2), expected[1]
    )


def test_rng_state_round_trip_and_preservation():
    torch.manual_seed(1)
    np.random.seed(1)
    state = rng_state()
    first = (torch.rand(3), np.random.rand(3))
    set_rng_state(state)
    with preserved_rng():
        torch.rand(100)
        np.random.rand(100)
    second = (torch.rand(3), np.random.rand(3))
    assert torch.equal(first[0], second[0]) and np.array_equal(first[1], second[1])


# A process killed while it writes a checkpoint: the write has reached the temporary file but
# not the rename (fsync is made slow so that the kill lands there).
KILLED_WRITER = """
import os, sys, time
import torch
from adautomix.engine import checkpoint
os.fsync = lambda fd: time.sleep(120)
checkpoint.save_checkpoint({"w": torch.zeros(1 << 20)}, sys.argv[1])
"""


def test_a_write_killed_midway_keeps_the_old_checkpoint_and_its_temporary_is_removed(tmp_path):
    save_checkpoint({"w": torch.ones(3)}, tmp_path)
    writer = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(tmp_path)])
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".checkpoint-*.tmp")) or list(tmp_path.glob(".checkpoint-*.tmp"))[
        0
    ].stat().st_size < (1 << 22):
        assert writer.poll() is None and time.monotonic() < deadline, "the writer ended early"
        time.sleep(0.05)
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    (partial,) = tmp_path.glob(".checkpoint-*.tmp")
    assert torch.equal(load_checkpoint(tmp_path)["w"], torch.ones(3))  # the old one, intact
    assert remove_partial_writes(tmp_path) == [partial]
    assert os.listdir(tmp_path) == [CHECKPOINT_NAME]


SIZE = r"\d+(\.\d)? (bytes|KiB|MiB|GiB)"


def test_a_full_disk_is_one_line_with_the_folder_and_its_free_space_and_keeps_the_previous(
    tmp_path, monkeypatch
):
    save_checkpoint({"a": torch.arange(3)}, tmp_path)
    onto_a_full_disk(monkeypatch)
    with pytest.raises(CheckpointWriteError) as error:
        save_checkpoint({"a": torch.zeros(100_000)}, tmp_path)
    message = str(error.value)
    assert re.fullmatch(
        rf"no space left to write {CHECKPOINT_NAME} in {re.escape(str(tmp_path))} "
        rf"\({SIZE} free, it needs about {SIZE}\); the previous "
        rf"{CHECKPOINT_NAME} is intact\. Free space there \(or move the folder to a larger "
        r"disk\), then start it again with --resume to continue from the last checkpoint",
        message,
    ), message
    assert "inline_container" not in message and error.value.__suppress_context__
    assert exit_status(error.value) == 1
    assert os.listdir(tmp_path) == [CHECKPOINT_NAME]  # no temporary left behind
    assert torch.equal(load_checkpoint(tmp_path)["a"], torch.arange(3))

    with pytest.raises(CheckpointWriteError, match=r"\. Free space there, or train into an"):
        save_checkpoint({"a": 1}, tmp_path / "new")  # no checkpoint before it
