"""What the distributed code path costs a training step: one process against N ranks at the same
global batch, and what the gradient all-reduce adds to AdAutoMix against vanilla.

Each configuration is a separate launch of this file: "plain" is one process with no process
group (the code path of `adautomix train`); "torchrun×N" is N ranks under
`python -m torch.distributed.run` (Gloo on the CPU, NCCL on GPUs), each computing 1/N of the same
global batch and averaging gradients as the engine does (engine/distributed.py). A step is the
engine's: training_step, backward, gradient reduction, optimiser step, EMA/teacher update. Rank 0
also times the reduction alone, so the figure "reduce ms" is what averaging the gradients costs
per step, whatever the compute.

Launches are rotated over repeats (A B C D, B C D A, ...) so a shared machine's drifts hit every
configuration alike; the median over repeats is reported.

On this 2-core CPU, 2 Gloo processes of 1 thread share the cores that 1 process uses as 2
threads: the ratio is a check of the overhead, not a speed-up. On a GPU machine
`--device cuda --ranks 1` compares one GPU with and without the distributed code path
(torchrun×1: the launcher's environment; a world of one starts no process group and the engine
calls no collective, so this measures that the path costs nothing) — bench/gpu.sh.

    python bench/distributed.py            # vanilla and adautomix, 1 vs 2 ranks
    python bench/distributed.py --model resnet18 --batch-size 32 --steps 4 --repeats 2
    python bench/distributed.py --device cuda --ranks 1 --batch-size 256
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import torch

from adautomix.config import RunConfig
from adautomix.engine import distributed
from adautomix.engine.optim import build_optimizer, optimizer_step, param_groups
from adautomix.engine.train import build_networks

TOTAL_STEPS = 100_000  # the EMA schedule's T; any long run


def worker(args: argparse.Namespace) -> None:
    """One rank (or the one plain process): time steps, write rank 0's figures as JSON."""
    with distributed.process_group(args.device) as (ranks, device):
        if device.type == "cpu":
            torch.set_num_threads(max(1, args.threads // ranks.world_size))
        per_rank = args.batch_size // ranks.world_size
        config = RunConfig(
            model=args.model, method=args.method, batch_size=args.batch_size, model_width=args.width
        )
        manifest = types.SimpleNamespace(num_classes=args.num_classes, channels=3)
        torch.manual_seed(0)
        model, method, ema = build_networks(config, manifest, device)
        named = (*model.named_parameters(prefix="model"), *method.named_parameters(prefix="method"))
        optimizer = build_optimizer(
            config, param_groups(config, named, method.mix_block_parameters())
        )
        scaler = torch.amp.GradScaler(device.type, enabled=False)
        distributed.broadcast_state([model, method])
        g = torch.Generator().manual_seed(ranks.rank)
        images = torch.randn(per_rank, 3, args.image_size, args.image_size, generator=g).to(device)
        labels = torch.randint(0, args.num_classes, (per_rank,), generator=g).to(device)
        reduce_seconds: list[float] = []

        def timed_reduce(params):
            synchronize(device)
            started = time.perf_counter()
            distributed.average_gradients(params)
            synchronize(device)
            reduce_seconds.append(time.perf_counter() - started)

        step_seconds = []
        for step in range(args.warmup + args.steps):
            synchronize(device)
            started = time.perf_counter()
            loss, _ = method.training_step(model, images, labels, step)
            optimizer_step(loss, optimizer, scaler, reduce_gradients=timed_reduce)
            method.after_optimizer_step(model, step, TOTAL_STEPS)
            if ema is not None:
                ema.update(model, step)
            synchronize(device)
            step_seconds.append(time.perf_counter() - started)
        timed = slice(args.warmup, None)
        if ranks.is_main:
            Path(args.result).write_text(
                json.dumps(
                    {
                        "step_s": statistics.median(step_seconds[timed]),
                        "reduce_s": statistics.median(reduce_seconds[timed]),
                        "gradient_mib": sum(
                            p.numel() * p.element_size()
                            for group in optimizer.param_groups
                            for p in group["params"]
                        )
                        / 2**20,
                    }
                )
            )


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launch(args: argparse.Namespace, method: str, ranks: int, plain: bool) -> dict[str, float]:
    """One configuration in fresh processes; rank 0's figures."""
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        options = [
            "--worker",
            "--method",
            method,
            "--model",
            args.model,
            "--width",
            str(args.width),
            "--batch-size",
            str(args.batch_size),
            "--image-size",
            str(args.image_size),
            "--num-classes",
            str(args.num_classes),
            "--steps",
            str(args.steps),
            "--warmup",
            str(args.warmup),
            "--device",
            args.device,
            "--threads",
            str(args.threads),
            "--result",
            str(result),
        ]
        launcher = (
            [sys.executable]
            if plain
            else [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nnodes",
                "1",
                "--nproc_per_node",
                str(ranks),
                "--master_addr",
                "127.0.0.1",
                "--master_port",
                str(free_port()),
            ]
        )
        env = {**os.environ, "OMP_NUM_THREADS": str(max(1, args.threads // ranks))}
        subprocess.run(
            [*launcher, __file__, *options], check=True, env=env, stdout=subprocess.DEVNULL
        )
        return json.loads(result.read_text())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--methods", default="vanilla,adautomix", help="comma-separated [vanilla,adautomix]"
    )
    p.add_argument("--ranks", type=int, default=2, help="processes of the torchrun launch [2]")
    p.add_argument("--model", default="resnet18")
    p.add_argument("--batch-size", type=int, default=32, help="the global batch [32]")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--num-classes", type=int, default=100)
    p.add_argument(
        "--width", type=int, default=0, help="CIFAR-stem ResNets' width (0: the paper's 64) [0]"
    )
    p.add_argument("--steps", type=int, default=4, help="timed steps per launch [4]")
    p.add_argument("--warmup", type=int, default=2, help="untimed first steps per launch [2]")
    p.add_argument("--repeats", type=int, default=2, help="rounds over all launches [2]")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count() or 1,
        help="CPU threads in all, shared by the ranks [all cores]",
    )
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--method", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    if args.batch_size % args.ranks:
        raise SystemExit(
            f"--batch-size {args.batch_size} must split evenly over {args.ranks} ranks"
        )
    launches = [
        (m, ranks, plain)
        for m in args.methods.split(",")
        for ranks, plain in ((1, True), (args.ranks, False))
    ]
    device = (
        torch.cuda.get_device_name(0)
        if args.device == "cuda"
        else f"CPU, {args.threads} threads in all"
    )
    print(
        f"{args.model}, {args.image_size} px, global batch {args.batch_size}, "
        f"{args.num_classes} classes, {device}; {args.repeats} repeats × {args.steps} steps "
        f"(+{args.warmup} warm-up)",
        flush=True,
    )
    figures: dict[tuple, list[dict]] = {launch_: [] for launch_ in launches}
    for repeat in range(args.repeats):
        shift = repeat % len(launches)
        for launch_ in launches[shift:] + launches[:shift]:
            figures[launch_].append(launch(args, *launch_))
            print(f"  {launch_}: {figures[launch_][-1]}", file=sys.stderr, flush=True)
        print(f"repeat {repeat + 1} done", file=sys.stderr, flush=True)

    def median(launch_, key):
        return statistics.median(f[key] for f in figures[launch_])

    print(
        f"{'method':12s} {'launch':12s} {'s/step':>8s} {'img/s':>8s} {'× plain':>8s} "
        f"{'reduce ms':>10s} {'reduce %':>9s} {'grad MiB':>9s}"
    )
    for m, ranks, plain in launches:
        step, reduce = median((m, ranks, plain), "step_s"), median((m, ranks, plain), "reduce_s")
        base = median((m, 1, True), "step_s")
        name = "plain" if plain else f"torchrun×{ranks}"
        print(
            f"{m:12s} {name:12s} {step:8.3f} {args.batch_size / step:8.1f} {step / base:8.2f} "
            f"{1000 * reduce:10.2f} {100 * reduce / step:9.1f} "
            f"{figures[(m, ranks, plain)][0]['gradient_mib']:9.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
