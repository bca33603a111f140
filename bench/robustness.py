"""What the robustness evaluation costs on 1,000 Fashion-MNIST test images with a small CNN:

- generating each corruption (5 severities) against one model pass over the same images;
- reading one stored (cached) corrupted set against one model pass: what evaluating a
  corruption costs once the set is prepared;
- the wall time of every metric (top-1/top-5/loss/ECE share one pass; FGSM, occlusion and the
  95 corrupted sets make their own) and of the whole evaluation of one network.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python bench/robustness.py --threads 2

The clean dataset is Fashion-MNIST with its test split cut to the first --images images, written
to a temporary data root, so the corrupted set generated from it is exactly those images. The
network is a 4-stage CNN (widths 16-128, about 0.1 M parameters), untrained: accuracy does not
change the cost.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from adautomix.data import build_loader, read_source
from adautomix.data.corrupted import prepare_corrupted, split_name
from adautomix.data.corruptions import CORRUPTIONS, SEVERITIES, corrupt
from adautomix.data.prepare import _write, write_atomically
from adautomix.eval import create_metric, evaluate
from adautomix.eval.loop import predictions


def small_cnn(in_chans: int = 1, num_classes: int = 10) -> nn.Module:
    layers, previous = [], in_chans
    for i, width in enumerate((16, 32, 64, 128)):
        layers += [
            nn.Conv2d(previous, width, 3, 1 if i == 0 else 2, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
        ]
        previous = width
    return nn.Sequential(
        *layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(previous, num_classes)
    )


def timed(work) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    root = Path(tempfile.mkdtemp(prefix="bench-robustness-"))
    raw = read_source("fashion-mnist", download_dir=root / ".downloads")
    images, labels = raw.splits["test"]
    cut = dataclasses.replace(
        raw, splits={**raw.splits, "test": (images[: args.images], labels[: args.images])}
    )
    clean = write_atomically(root / "fashion-mnist", lambda out: _write(cut, out))
    loader = build_loader(clean, "test", batch_size=args.batch_size, train=False, kind="memory")
    network = small_cnn().eval()

    def one_pass():
        for _ in predictions(network, loader):
            pass

    model_pass = statistics.median(timed(one_pass) for _ in range(3))
    print(
        f"{args.images} images of {clean.image_size} px, batch {args.batch_size}, "
        f"{args.threads} threads; one model pass {model_pass * 1000:.0f} ms\n"
    )

    test_images = images[: args.images]
    print(f"{'corruption':18s} {'generate 5 sev. (s)':>20s} {'per set / pass':>15s}")
    generation = {}
    for name in CORRUPTIONS:
        generation[name] = timed(
            lambda name=name: [corrupt(test_images, name, s) for s in SEVERITIES]
        )
        print(f"{name:18s} {generation[name]:20.2f} {generation[name] / 5 / model_pass:15.2f}")
    total = sum(generation.values())
    print(f"{'all 95 sets':18s} {total:20.2f} {total / 95 / model_pass:15.2f}  (mean per set)\n")

    stored = timed(lambda: prepare_corrupted("fashion-mnist-c", data_root=root))
    print(f"generate and store fashion-mnist-c once (95 sets): {stored:.1f} s")
    corrupted = prepare_corrupted("fashion-mnist-c", data_root=root)

    def read_one_set():
        split_loader = build_loader(
            corrupted, split_name("fog", 3), batch_size=args.batch_size, train=False, kind="memory"
        )
        for _ in split_loader:
            pass

    cached = statistics.median(timed(read_one_set) for _ in range(5))
    print(
        f"read one stored set: {cached * 1000:.1f} ms = {cached / model_pass:.3f} model passes "
        "(goal: <= 1)\n"
    )

    specs = ["top1", "top5", "loss", "ece", "fgsm", "occlusion", "corruption"]
    whole = 0.0
    for spec in specs:
        metric = create_metric(spec, progress=False)
        seconds = timed(lambda metric=metric: evaluate(network, loader, [metric]))
        whole += seconds
        print(f"{spec:12s} {seconds:7.2f} s")
    print(
        f"{'every metric':12s} {whole:7.2f} s for one network (goal: < 120 s); "
        f"the online and EMA networks of a run: {2 * whole:.1f} s"
    )
    every = timed(
        lambda: evaluate(network, loader, [create_metric(s, progress=False) for s in specs])
    )
    print(f"{'one call':12s} {every:7.2f} s (the batch metrics sharing one pass)")


if __name__ == "__main__":
    main()
