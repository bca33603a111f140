import math

import pytest

from adautomix.config import RunConfig
from adautomix.engine.optim import lr_at


def test_epoch_cosine_matches_mmcv_log_value():
    # spec §2 step 10: mmcv's log line "Epoch [100]" (1-based, so e = 99) of 800 shows 9.813e-2
    config = RunConfig(epochs=800, lr=0.1, min_lr=0.05)
    assert lr_at(config, step=99 * 500, steps_per_epoch=500) == pytest.approx(0.09813, abs=1e-5)


def test_epoch_schedule_is_constant_within_an_epoch_and_reaches_floor_region():
    config = RunConfig(epochs=4, lr=0.1, min_lr=0.01)
    assert lr_at(config, 0, 10) == lr_at(config, 9, 10) == pytest.approx(0.1)
    assert lr_at(config, 10, 10) < 0.1
    last = lr_at(config, 39, 10)
    assert 0.01 < last < 0.03


def test_warmup_is_linear_then_cosine_by_step():
    config = RunConfig(epochs=10, lr=1.0, min_lr=0.0, warmup_epochs=1, lr_schedule_by="step")
    assert lr_at(config, 0, 10) == pytest.approx(0.1)
    assert lr_at(config, 4, 10) == pytest.approx(0.5)
    assert lr_at(config, 10, 10) == pytest.approx(1.0)
    assert lr_at(config, 55, 10) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
