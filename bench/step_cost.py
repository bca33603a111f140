"""What a training step of each method costs, side by side: seconds per step and peak memory,
each also as a ratio to vanilla.

Every method trains the same network (CIFAR ResNet-18 by default) on the same synthetic batch
(32 px, batch 100, 100 classes). A step is what the engine does: training_step, zero_grad,
backward, optimiser step, then the EMA update: the method's own teacher (AutoMix, AdAutoMix) or
else the engine's EMA of the online network.

Time: within each repeat the methods run in a rotated order (A B C, B C A, C A B, ...), so a
shared machine's slow drifts hit every method alike; the median over repeats is reported.

Memory: the peak is reset, then the model, the method, optimiser and a few steps follow; the
figure is the peak minus what was held before, i.e. the network, the method's own networks,
gradients, optimiser state and activations. CPU: peak resident set size (VmHWM, reset through
/proc/self/clear_refs; tracemalloc does not see torch's allocations), each method in a fresh
subprocess so that no allocator cache is shared. CUDA: torch.cuda.max_memory_allocated, in this
process (the caching allocator's cache does not count as allocated).

--precision fp32,bf16 measures every method in each precision (adautomix/precision.py: autocast
of the step, a GradScaler for fp16), each compared with vanilla in the same precision. A method
whose optional package is missing here (PuzzleMix's gco-wrapper, SaliencyMix's OpenCV) is left
out with a line saying so.

    python bench/step_cost.py                         # every method, CPU or the first GPU
    python bench/step_cost.py --methods vanilla,mixup,automix,adautomix --repeats 3
    python bench/step_cost.py --methods vanilla@contiguous,adautomix,adautomix@contiguous
    python bench/step_cost.py --precision fp32,bf16 --batch-size 512     # as bench/gpu.sh

Networks are in the engine's default channels_last memory format; a method named NAME@contiguous
runs in PyTorch's default NCHW layout instead, and is compared with its own format's vanilla
when that is in the list too.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from adautomix.config import RunConfig, parse_override
from adautomix.ema import ModelEma
from adautomix.engine.optim import build_optimizer, optimizer_step, param_groups
from adautomix.mixers import available_methods, create_method, unavailable_reason
from adautomix.models import create_model
from adautomix.precision import autocast, check_precision, grad_scaler

TOTAL_STEPS = 100_000  # the EMA schedule's T; any long run


class Trainer:
    """One method in one precision on its own copy of the network, stepping as the engine does."""

    def __init__(self, name: str, precision: str, args: argparse.Namespace, device: torch.device):
        method, options, memory_format = method_spec(name)
        self.precision, self.device_type = precision, device.type
        self.model = create_model(args.model, args.num_classes, args.in_chans, width=args.width).to(
            device, memory_format=memory_format
        )
        self.method = create_method(method, self.model, args.num_classes, **options)
        self.method.to(device, memory_format=memory_format)
        config = RunConfig()  # SGD 0.1, momentum 0.9, wd 1e-4; EMA decay 0.999
        named = (*self.model.named_parameters(), *self.method.named_parameters())
        self.optimizer = build_optimizer(config, param_groups(config, named))
        self.scaler = grad_scaler(precision, device.type)
        self.ema = ModelEma(self.model, config.ema_decay) if self.method.teacher() is None else None
        self.step = 0

    def run(self, images: torch.Tensor, labels: torch.Tensor, steps: int) -> None:
        for _ in range(steps):
            with autocast(self.precision, self.device_type):
                loss, _ = self.method.training_step(self.model, images, labels, self.step)
            optimizer_step(loss, self.optimizer, self.scaler)
            self.method.after_optimizer_step(self.model, self.step, TOTAL_STEPS)
            if self.ema is not None:
                self.ema.update(self.model, self.step)
            self.step += 1


MEMORY_FORMATS = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}


def method_spec(spec: str) -> tuple[str, dict, torch.memory_format]:
    """ "automix:alpha=1@contiguous" -> ("automix", {"alpha": 1.0}, torch.contiguous_format): a
    method with options, in the engine's default memory format (channels_last) unless @named."""
    spec, _, format_name = spec.partition("@")
    name, *options = spec.split(":")
    return (
        name,
        dict(parse_override(option) for option in options),
        MEMORY_FORMATS[format_name or "channels_last"],
    )


def synthetic_batch(args: argparse.Namespace, device: torch.device):
    g = torch.Generator().manual_seed(0)
    images = torch.randn(
        args.batch_size, args.in_chans, args.image_size, args.image_size, generator=g
    )
    labels = torch.randint(0, args.num_classes, (args.batch_size,), generator=g)
    return images.to(device), labels.to(device)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(
    names: list[str], args: argparse.Namespace, device: torch.device
) -> dict[str, float]:
    """Median seconds per step of each "METHOD PRECISION", interleaved within each repeat."""
    torch.manual_seed(0)
    images, labels = synthetic_batch(args, device)
    trainers = {name: Trainer(*name.split(" "), args, device) for name in names}
    for trainer in trainers.values():  # first steps allocate gradients and optimiser state
        trainer.run(images, labels, 1)
    times: dict[str, list[float]] = {name: [] for name in names}
    for repeat in range(args.repeats):
        shift = repeat % len(names)
        for name in names[shift:] + names[:shift]:
            synchronize(device)
            started = time.perf_counter()
            trainers[name].run(images, labels, args.steps)
            synchronize(device)
            times[name].append((time.perf_counter() - started) / args.steps)
        print(
            f"repeat {repeat + 1}: " + ", ".join(f"{n} {t[-1]:.2f} s" for n, t in times.items()),
            file=sys.stderr,
            flush=True,
        )
    return {name: statistics.median(t) for name, t in times.items()}


def resident_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}; peak memory needs Linux")


def peak_memory_here(name: str, args: argparse.Namespace, device: torch.device) -> float:
    """MiB "METHOD PRECISION" adds at its peak (on the CPU: run in a fresh process)."""
    torch.manual_seed(0)
    images, labels = synthetic_batch(args, device)
    model_only = create_model(args.model, args.num_classes, args.in_chans, width=args.width).to(
        device
    )
    del model_only  # warms the allocator and imports up to the point the method starts
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        held = torch.cuda.memory_allocated(device)
        trainer = Trainer(*name.split(" "), args, device)
        trainer.run(images, labels, args.memory_steps)
        peak = (torch.cuda.max_memory_allocated(device) - held) / 2**20
        del trainer
        return peak
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current resident size
    held = resident_kib("VmRSS")
    Trainer(*name.split(" "), args, device).run(images, labels, args.memory_steps)
    return (resident_kib("VmHWM") - held) / 1024


def peak_memory(name: str, args: argparse.Namespace, device: torch.device) -> float:
    if device.type == "cuda":
        return peak_memory_here(name, args, device)
    command = [
        sys.executable,
        __file__,
        "--memory-of",
        name,
        "--model",
        args.model,
        "--batch-size",
        str(args.batch_size),
        "--image-size",
        str(args.image_size),
        "--num-classes",
        str(args.num_classes),
        "--in-chans",
        str(args.in_chans),
        "--width",
        str(args.width),
        "--memory-steps",
        str(args.memory_steps),
        "--device",
        args.device,
        "--threads",
        str(args.threads),
    ]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["peak_mib"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--methods",
        default=",".join(available_methods()),
        help="comma-separated, each NAME or NAME:KEY=VALUE[:KEY=VALUE] for method "
        "options, with @contiguous for NCHW networks; vanilla is added as the "
        "reference [all]",
    )
    p.add_argument("--model", default="resnet18")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--num-classes", type=int, default=100)
    p.add_argument("--in-chans", type=int, default=3, help="image channels [3]")
    p.add_argument(
        "--width", type=int, default=0, help="CIFAR-stem ResNets' width (0: the paper's 64) [0]"
    )
    p.add_argument("--repeats", type=int, default=3, help="timed rounds over all methods [3]")
    p.add_argument("--steps", type=int, default=1, help="steps per method per round [1]")
    p.add_argument(
        "--memory-steps",
        type=int,
        default=2,
        help="steps in each memory run (0: no memory runs) [2]",
    )
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument(
        "--precision",
        default="fp32",
        help="comma-separated precisions, each of fp32, bf16, fp16 [fp32]",
    )
    p.add_argument("--json", help="also write the figures to this JSON file")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--memory-of", help=argparse.SUPPRESS)  # the subprocess of one memory run
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(
        "cuda"
        if args.device == "auto" and torch.cuda.is_available()
        else "cpu"
        if args.device == "auto"
        else args.device
    )
    if args.memory_of:
        print(json.dumps({"peak_mib": peak_memory_here(args.memory_of, args, device)}))
        return 0

    methods = args.methods.split(",")
    try:
        unknown = sorted({method_spec(n)[0] for n in methods} - set(available_methods()))
    except KeyError as error:
        valid = ", ".join(MEMORY_FORMATS)
        raise SystemExit(f"unknown memory format {error}; valid: {valid}") from None
    if unknown:
        raise SystemExit(f"unknown method(s) {unknown}; valid: {', '.join(available_methods())}")
    for method in methods:
        reason = unavailable_reason(method_spec(method)[0])
        if reason:
            print(f"left out: {reason}", flush=True)
    methods = ["vanilla"] + [
        n for n in methods if n != "vanilla" and not unavailable_reason(method_spec(n)[0])
    ]
    precisions = args.precision.split(",")
    for precision in precisions:
        try:
            check_precision(precision, device)
        except ValueError as error:
            raise SystemExit(str(error)) from None
    names = [f"{m} {p}" for p in precisions for m in methods]
    device_name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU, {torch.get_num_threads()} threads"
    )
    print(
        f"{args.model}{f' width {args.width}' if args.width else ''}, {args.image_size} px, "
        f"batch {args.batch_size}, {args.num_classes} classes, {device_name}; "
        f"{args.repeats} repeats × {args.steps} step(s)",
        flush=True,
    )

    seconds = time_steps(names, args, device)
    memory = {
        name: peak_memory(name, args, device) if args.memory_steps else math.nan for name in names
    }
    print(
        f"{'method':20s} {'precision':9s} {'ms/step':>8s} {'× vanilla':>10s} {'img/s':>8s} "
        f"{'peak MiB':>9s} {'× vanilla':>10s}"
    )
    for name in names:
        method, precision = name.split(" ")
        reference = (
            "vanilla@contiguous"
            if method.endswith("@contiguous") and "vanilla@contiguous" in methods
            else "vanilla"
        ) + f" {precision}"
        print(
            f"{method:20s} {precision:9s} {1000 * seconds[name]:8.1f} "
            f"{seconds[name] / seconds[reference]:10.2f} "
            f"{args.batch_size / seconds[name]:8.1f} {memory[name]:9.0f} "
            f"{memory[name] / memory[reference]:10.2f}"
        )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "batch_size": args.batch_size,
                    "device": device_name,
                    "figures": [
                        {
                            "method": n.split(" ")[0],
                            "precision": n.split(" ")[1],
                            "step_ms": 1000 * seconds[n],
                            "peak_mib": memory[n],
                        }
                        for n in names
                    ],
                },
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
