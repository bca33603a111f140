"""The train step with more than one GPU: torch's launcher starts one process per GPU (Gloo
processes here, on the CPU), and a rank that fails fails the step with the checkpoint intact."""

from __future__ import annotations

import pytest

from adautomix.steps import train_step


def test_a_failing_rank_fails_the_step_and_names_the_launcher(tmp_path):
    # CIFAR-10 not prepared under data_root: every rank stops at once, before any checkpoint
    with pytest.raises(RuntimeError, match=r"torchrun with 2 processes exited with status [1-9]"
                                           r".*re-run resumes"):
        train_step(tmp_path / "checkpoints", "a" * 32 + ".dir", nproc=2, dataset="cifar10",
                   model="resnet18", method="vanilla", epochs=1, batch_size=10,
                   data_root=str(tmp_path / "no-data"), progress=False)
    (run_dir,) = (tmp_path / "checkpoints").iterdir()
    assert (run_dir / "config.json").exists() and not (run_dir / "checkpoint.pt").exists()
