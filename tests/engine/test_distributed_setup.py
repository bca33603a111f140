"""The distributed set-up's refusals and its reading of torchrun's environment, without starting
processes (tests/engine/test_distributed.py runs real torchrun)."""

from __future__ import annotations

import pytest
import torch

from adautomix.config import ConfigError, RunConfig
from adautomix.engine import distributed
from adautomix.engine.distributed import Ranks, ranks_from_environment, resolve_device
from adautomix.engine.train import rank_batch_size, setup


def test_ranks_come_from_torchruns_environment(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert ranks_from_environment() == Ranks(0, 1, 0)
    monkeypatch.setenv("WORLD_SIZE", "8")
    monkeypatch.setenv("RANK", "5")
    monkeypatch.setenv("LOCAL_RANK", "1")
    ranks = ranks_from_environment()
    assert ranks == Ranks(5, 8, 1) and ranks.distributed and not ranks.is_main


def test_more_processes_than_gpus_is_named(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda index: None)
    assert resolve_device("cuda", local_rank=1, world_size=4) == torch.device("cuda", 1)
    with pytest.raises(ConfigError, match=r"LOCAL_RANK 2 .* shows 2 .*--nproc_per_node 2"):
        resolve_device("auto", local_rank=2, world_size=4)
    assert resolve_device("cuda") == torch.device("cuda")  # one process: as before


def test_the_global_batch_must_split_evenly():
    assert rank_batch_size(96, 4) == 24
    with pytest.raises(ConfigError, match="batch_size 100 .* 3 processes"):
        rank_batch_size(100, 3)


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"sync_bn": True}, "sync_bn needs CUDA"),
        ({"method": "adautomix", "batch_size": 4}, "gets 2 images .* mixes 3"),
    ],
)
def test_a_distributed_run_refuses_what_cannot_work(fmnist_root, tmp_path, changes, message):
    # rank 0 of 2 without a process group: the collectives are no-ops, the checks are not
    values = dict(
        dataset="fashion-mnist",
        data_root=str(fmnist_root),
        subset=200,
        test_subset=100,
        batch_size=20,
        device="cpu",
        loader="memory",
        output_dir=str(tmp_path / "run"),
    )
    config = RunConfig(**{**values, **changes})
    assert distributed.all_reduce_sum(torch.ones(1)).item() == 1.0
    with pytest.raises(ConfigError, match=message):
        setup(config, False, Ranks(0, 2, 0), torch.device("cpu"))
