"""Sharded evaluation (torchrun): two Gloo ranks, each with half the batches, report what one
process reports over all of them, for the robustness metrics too."""

from __future__ import annotations

import json

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from adautomix.eval import evaluate
from adautomix.eval.fgsm import FGSM
from adautomix.eval.occlusion import Occlusion
from tests.tiny_backbone import TinyBackbone


def batches():
    generator = torch.Generator().manual_seed(0)
    return [
        (
            torch.randn(6, 1, 16, 16, generator=generator),
            torch.randint(0, 10, (6,), generator=generator),
        )
        for _ in range(4)
    ]


def metrics():
    # ratios 0 and 1 only: other ratios draw their patches by batch index, which a shard renumbers
    return ["top1", "ece", FGSM(0.1, mean=[0.5], std=[0.5]), Occlusion(ratios=[0.0, 1.0])]


def network():
    torch.manual_seed(0)
    return TinyBackbone(in_chans=1).eval()


def rank_main(rank: int, store: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        values = evaluate(network(), batches()[rank::2], metrics(), sharded=True)
        with open(f"{out}.{rank}", "w") as f:
            json.dump(values, f)
    finally:
        dist.destroy_process_group()


def test_two_ranks_report_the_whole_split(tmp_path):
    out = str(tmp_path / "values")
    mp.spawn(rank_main, args=(str(tmp_path / "store"), out), nprocs=2)
    whole = evaluate(network(), batches(), metrics())
    for rank in (0, 1):
        with open(f"{out}.{rank}") as f:
            sharded = json.load(f)
        assert sharded.keys() == whole.keys()
        for name, value in whole.items():
            assert sharded[name] == pytest.approx(value, abs=1e-6), name
