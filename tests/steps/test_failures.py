"""A train step's failure in a pipeline run is recorded: one that a retry cannot change (bad
input, a diverged loss) fails the retries of the same run at once with its line; any other lets
them try again; a new pipeline run checks for itself. (The same through kfp.local, retries and
all: tests/pipeline/test_local_run.py.)"""

from __future__ import annotations

import logging

import pytest

from adautomix.config import ConfigError
from adautomix.engine.loss_guard import NonFiniteLossError
from adautomix.engine.run_lock import RunLockError
from adautomix.errors import InputError, RunFailure
from adautomix.steps import train_step
from adautomix.steps.failures import failures_since, recorded_failures, recurs

RUN = {"kfp_run_id": "run-1"}


def test_a_retry_of_bad_input_fails_at_once_and_a_new_pipeline_run_checks_again(tmp_path, caplog):
    root = tmp_path / "checkpoints"
    with pytest.raises(ConfigError) as first:
        train_step(root, "v1", tags=RUN, lr=-1.0)
    with caplog.at_level(logging.WARNING), pytest.raises(InputError) as retried:
        train_step(root, "v1", tags=RUN, lr=-1.0)
    assert type(retried.value) is not ConfigError  # from the record, not from a new check
    assert str(retried.value) == str(first.value) == "lr must be > 0, got -1.0"
    assert "failing at once" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING), pytest.raises(ConfigError):
        train_step(root, "v1", tags={"kfp_run_id": "run-2"}, lr=-1.0)
    with caplog.at_level(logging.WARNING), pytest.raises(ConfigError):
        train_step(root, "v1", tags=RUN, lr=-2.0)  # other arguments: another step of the run
    assert "failing at once" not in caplog.text
    assert failures_since(root, 0)[0] == "lr must be > 0, got -1.0"


def test_a_failure_that_may_not_recur_is_recorded_and_the_retry_runs(tmp_path):
    root = tmp_path / "checkpoints"
    with pytest.raises(RunFailure), recorded_failures(root, RUN, {}):
        raise RunFailure("MLflow did not answer")
    ran = []
    with recorded_failures(root, RUN, {}):
        ran.append(True)
    assert ran == [True] and failures_since(root, 0) == ["MLflow did not answer"]


def test_what_recurs():
    assert recurs(ConfigError("bad")) and recurs(NonFiniteLossError("diverged"))
    # the attempt before still holds the folder's lock, which the retry takes over
    assert not recurs(RunLockError("in use")) and not recurs(RunFailure("lost node"))
