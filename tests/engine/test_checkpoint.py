import os

import numpy as np
import pytest
import torch

from adautomix.engine.checkpoint import (CHECKPOINT_NAME, load_checkpoint, preserved_rng,
                                         rng_state, save_checkpoint, set_rng_state)


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
    with pytest.raises(RuntimeError, match="delete it to start over"):
        load_checkpoint(tmp_path)


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
