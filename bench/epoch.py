"""The engine's epoch at CIFAR size, timed by part, as `adautomix train` runs it: setup, one
training epoch (train_one_epoch), the epoch's evaluation, logging and checkpoint
(evaluate_and_log), and within that, the 10,000-image test split of the online and EMA networks
(evaluate_split) and of one network alone (evaluate). Timings wait for the device. On a GPU, the
mean GPU utilisation over the run (MLflow's system metrics, sampled every second from setup to
the end) is printed too.

The data is CIFAR-10's pickle layout written from random bytes (no CIFAR is reachable offline;
pixel values do not change the cost), prepared once; MLflow writes to a scratch store (SQLite, or
a file store where SQLAlchemy is missing, as on a bare GPU machine).

    python bench/epoch.py                       # vanilla and adautomix, fp32, 50,000 images
    python bench/epoch.py --methods adautomix --precision fp32,bf16 --eval-batch-size 1000
    python bench/epoch.py --tiny                         # smoke run (tests/test_bench.py)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import pickle
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def write_cifar10(root: Path, train: int, test: int) -> Path:
    """cifar-10-batches-py/ of random pixels and labels: data_batch_1..5, test_batch, meta."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)

    def batch(count: int) -> dict:
        return {
            "data": rng.integers(0, 256, (count, 3 * 32 * 32), dtype=np.uint8),
            "labels": rng.integers(0, 10, count).tolist(),
        }

    for i, part in enumerate(np.array_split(np.arange(train), 5), 1):
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(batch(len(part))))
    (folder / "test_batch").write_bytes(pickle.dumps(batch(test)))
    (folder / "batches.meta").write_bytes(
        pickle.dumps({"label_names": [f"class{i}" for i in range(10)]})
    )
    return root


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(work, device: torch.device):
    synchronize(device)
    started = time.perf_counter()
    result = work()
    synchronize(device)
    return result, time.perf_counter() - started


def one_epoch(config) -> dict[str, float]:
    """Seconds of each part of one epoch of `config`."""
    from adautomix.engine import distributed
    from adautomix.engine.train import evaluate_and_log, evaluate_split, setup, train_one_epoch
    from adautomix.eval import evaluate

    with distributed.process_group(config.device) as (ranks, device):
        run, setup_s = timed(lambda: setup(config, False, ranks, device), device)
        try:
            metrics, train_s = timed(lambda: train_one_epoch(run, 0), device)
            _, epoch_end_s = timed(lambda: evaluate_and_log(run, 0, metrics), device)
            test_loader = run.data.test_loader
            _, test_s = timed(lambda: evaluate_split(run, "test", test_loader, "test"), device)
            _, one_s = timed(
                lambda: evaluate(run.model, test_loader, precision=config.precision), device
            )
        finally:
            run.tracker.finish()
        utilisation = math.nan
        if device.type == "cuda":
            from mlflow import MlflowClient

            history = MlflowClient().get_metric_history(
                run.tracker.run_id, "system/gpu_0_utilization_percentage"
            )
            utilisation = statistics.mean(m.value for m in history) if history else math.nan
    return {
        "gpu_utilisation_percent": utilisation,
        "setup_s": setup_s,
        "train_s": train_s,
        "images_per_s": metrics["images_per_sec"],
        "epoch_end_s": epoch_end_s,
        "test_online_and_ema_s": test_s,
        "test_one_network_s": one_s,
        "train_loss": metrics["train_loss"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--methods", default="vanilla,adautomix")
    parser.add_argument("--precision", default="fp32", help="comma-separated: fp32, bf16, fp16")
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--width", type=int, default=0, help="CIFAR ResNets' width (0: 64)")
    parser.add_argument("--train-images", type=int, default=50_000)
    parser.add_argument("--test-images", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--eval-batch-size", type=int, default=0, help="0: the batch size")
    parser.add_argument("--loader", default="auto")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="smoke run: 200 + 100 images in batches of 20, width 4; the figures mean nothing",
    )
    args = parser.parse_args(argv)
    if args.tiny:
        args.train_images, args.test_images, args.batch_size, args.width = 200, 100, 20, 4

    from adautomix.config import RunConfig
    from adautomix.data import prepare

    scratch = Path(tempfile.mkdtemp(prefix="bench-epoch-"))
    if importlib.util.find_spec("sqlalchemy"):
        os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{scratch / 'mlflow.db'}")
    else:  # mlflow-skinny: no SQL store
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        os.environ.setdefault("MLFLOW_TRACKING_URI", (scratch / "mlruns").as_uri())
    os.environ.setdefault("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "1")
    os.environ.setdefault("MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING", "1")
    figures = []
    try:
        started = time.perf_counter()
        source = write_cifar10(scratch / "source", args.train_images, args.test_images)
        prepare("cifar10", source, data_root=scratch / "data")
        print(
            f"{args.train_images:,} + {args.test_images:,} CIFAR-size random images written and "
            f"prepared in {time.perf_counter() - started:.1f} s",
            flush=True,
        )
        print(
            f"{'method':10s} {'precision':9s} {'setup s':>8s} {'train s':>8s} {'img/s':>8s} "
            f"{'epoch end s':>11s} {'test (online+EMA) s':>19s} {'test, one net s':>15s} "
            f"{'GPU %':>6s}"
        )
        for method in args.methods.split(","):
            for precision in args.precision.split(","):
                config = RunConfig(
                    dataset="cifar10",
                    model=args.model,
                    model_width=args.width,
                    method=method,
                    epochs=1,
                    batch_size=args.batch_size,
                    eval_batch_size=args.eval_batch_size,
                    precision=precision,
                    loader=args.loader,
                    device=args.device,
                    data_root=str(scratch / "data"),
                    output_dir=str(scratch / f"run-{method}-{precision}"),
                    experiment="bench-epoch",
                    progress=False,
                    log_images_every=0,
                )
                parts = one_epoch(config)
                figures.append({"method": method, "precision": precision, **parts})
                print(
                    f"{method:10s} {precision:9s} {parts['setup_s']:8.2f} "
                    f"{parts['train_s']:8.2f} {parts['images_per_s']:8.0f} "
                    f"{parts['epoch_end_s']:11.2f} {parts['test_online_and_ema_s']:19.2f} "
                    f"{parts['test_one_network_s']:15.3f} "
                    f"{parts['gpu_utilisation_percent']:6.1f}",
                    flush=True,
                )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "train_images": args.train_images,
                    "test_images": args.test_images,
                    "batch_size": args.batch_size,
                    "eval_batch_size": args.eval_batch_size or args.batch_size,
                    "figures": figures,
                },
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
