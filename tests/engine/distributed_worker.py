"""One rank of a distributed test run, started by tests/engine/test_distributed.py through
`python -m torch.distributed.run`. It trains a saved RunConfig through the real engine with the
small test backbone and leaves in --dump what the tests compare: each rank's final state, its
result, its pid, and a log line for every write only rank 0 may make."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch
from torch import nn

import adautomix.engine.train as engine
from adautomix.config import RunConfig
from tests.tiny_backbone import TinyBackbone


class Stop(Exception):
    """Ends the run after a chosen epoch, as a crash after its checkpoint would."""


def tiny_model(norm: str):
    def create(name, num_classes, in_chans, pretrained, width=None):
        model = TinyBackbone(num_classes, in_chans)
        if norm == "none":  # BN-free: one process and N ranks then compute the same maths
            for parent in model.modules():
                for child_name, child in parent.named_children():
                    if isinstance(child, nn.BatchNorm2d):
                        setattr(parent, child_name, nn.Identity())
        return model

    return create


def record_writes(dump: Path, rank: int) -> None:
    """Wrap every rank-0-only write so that each call leaves a line in writes-RANK.log."""
    log = dump / f"writes-{rank}.log"

    def note(what: str) -> None:
        with open(log, "a") as f:
            f.write(what + "\n")

    save_checkpoint, save_config = engine.save_checkpoint, RunConfig.save
    engine.save_checkpoint = lambda state, out: (
        note(f"checkpoint {state['epoch']}"),
        save_checkpoint(state, out),
    )[1]
    RunConfig.save = lambda self, path: (note("config"), save_config(self, path))[1]
    tracker_cls = engine.Tracker

    class CountingTracker(tracker_cls):
        def __init__(self, *args, **kwargs):
            note("tracker")
            super().__init__(*args, **kwargs)

        def log_metrics(self, metrics, step):
            note(f"metrics {step}")
            super().log_metrics(metrics, step)

    engine.Tracker = CountingTracker


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("--dump", required=True)
    parser.add_argument("--norm", choices=("batch", "none"), default="batch")
    parser.add_argument("--stop-after-epoch", type=int, default=0)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()
    rank = int(os.environ.get("RANK", "0"))
    dump = Path(args.dump)
    dump.mkdir(parents=True, exist_ok=True)
    (dump / f"pid-{rank}").write_text(str(os.getpid()))
    engine.create_model = tiny_model(args.norm)
    record_writes(dump, rank)

    runs = []
    evaluate_and_log = engine.evaluate_and_log

    def evaluate_and_stop(run, epoch, metrics):
        runs.append(run)
        out = evaluate_and_log(run, epoch, metrics)
        if epoch + 1 == args.stop_after_epoch:
            raise Stop
        return out

    engine.evaluate_and_log = evaluate_and_stop
    config = RunConfig.load(args.config)
    try:
        result = engine.train(config, resume=args.resume)
        metrics = result.metrics
    except Stop:
        metrics = {}
    run = runs[-1]
    torch.save(
        {
            "model": run.model.state_dict(),
            "method": run.method.state_dict(),
            "ema": run.ema.state_dict() if run.ema is not None else None,
            "history": run.history,
        },
        dump / f"state-{rank}.pt",
    )
    (dump / f"result-{rank}.json").write_text(json.dumps(metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
