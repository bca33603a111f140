"""Loader throughput, and the share of a training epoch spent waiting for data.

    .venv/bin/python bench/loaders.py                    # all of it (about 6 minutes on 2 cores)
    .venv/bin/python bench/loaders.py --only throughput --rounds 5
    .venv/bin/python bench/loaders.py --tiny --rounds 1 --fmnist-subset 64 --jpeg-images 10 \
        --wait-subset 48                                 # smoke run (tests/test_bench.py)

Throughput: images/s over one train epoch of each loader kind, with the augmentations of
the recipes (data/augment.py; the kinds differ only in how they apply them):
- torch: DataLoader, 2 workers, per-sample torchvision v2 transforms;
- dali: DALI with 2 threads (on the GPU when there is one);
- memory: the whole uint8 array on the device, batched crop and flip (array datasets only).
Datasets: Fashion-MNIST (prepared from Debian's copy when data_root lacks it) and a folder of
224 px-class JPEGs this script writes once (photo-like: smooth colour fields plus noise, 256-340
px a side, quality 90), read with RandomResizedCrop(224) and a flip.

Each round times one epoch of every loader in turn, so that load from other processes on a shared
machine hits all of them alike; ratios to torch are taken within a round.

Data wait: a vanilla epoch (ResNet-18, cross-entropy, SGD) on a subset, timing how long each step
waits for its batch, with the loader kind "auto" picks and with torch for comparison.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from adautomix.data import build_loader, ensure_dataset, prepare

JPEG_CLASSES = 10


def write_jpeg_source(folder: Path, count: int) -> Path:
    """An ImageNet-layout folder (train/ and val/) of `count` + count/10 photo-like JPEGs."""
    rng = np.random.default_rng(0)
    for split, split_count in (("train", count), ("val", max(JPEG_CLASSES, count // 10))):
        for i in range(split_count):
            height, width = rng.integers(256, 341, size=2)
            coarse = rng.integers(0, 256, (height // 32 + 2, width // 32 + 2, 3), np.uint8)
            smooth = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC))
            pixels = smooth + rng.normal(0, 10, smooth.shape)
            path = folder / split / f"class{i % JPEG_CLASSES}" / f"{i:06d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(path, quality=90)
    return folder


def jpeg_dataset(data_root: Path, count: int):
    bench_root = data_root / "bench"
    source = bench_root / f"jpeg-source-{count}"
    if not source.exists():
        write_jpeg_source(source, count)
    return prepare("image-folder", source, data_root=bench_root / f"jpeg-{count}")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def warm_up(loader) -> None:
    """Pay the one-time costs (imports, worker start, page cache) before any timing."""
    next(iter(loader))


def epoch_rate(loader, epoch: int) -> float:
    loader.set_epoch(epoch)
    started, seen = time.perf_counter(), 0
    for images, _ in loader:
        seen += images.shape[0]
    synchronize(loader.device)
    return seen / (time.perf_counter() - started)


def throughput(
    manifest,
    kinds: list[str],
    *,
    rounds: int,
    batch_size: int,
    subset: int,
    device: torch.device,
    image_size: int | None,
) -> dict[str, list[float]]:
    """Images/s per kind and round."""
    loaders = {
        kind: build_loader(
            manifest,
            "train",
            batch_size=batch_size,
            train=True,
            kind=kind,
            device=device,
            subset=subset,
            num_workers=2,
            image_size=image_size,
        )
        for kind in kinds
    }
    for loader in loaders.values():
        warm_up(loader)
    rates = {kind: [] for kind in kinds}
    for epoch in range(1, rounds + 1):
        for kind, loader in loaders.items():
            rates[kind].append(epoch_rate(loader, epoch))
            print(
                f"  {manifest.name} {kind:6s} round {epoch}: {rates[kind][-1]:8.0f} images/s",
                flush=True,
            )
    return rates


def data_wait(
    manifest,
    kind: str,
    *,
    subset: int,
    batch_size: int,
    device: torch.device,
    model_name: str,
    image_size: int | None,
) -> dict[str, float | str]:
    """Share of a vanilla training epoch spent blocked on the loader. The epoch is short, so the
    wait for its first batch (a new DALI pipeline, or the workers' first batch) weighs more than
    in a real epoch."""
    from adautomix.models import create_model

    loader = build_loader(
        manifest,
        "train",
        batch_size=batch_size,
        train=True,
        kind=kind,
        device=device,
        subset=subset,
        num_workers=2,
        image_size=image_size,
    )
    torch.manual_seed(0)
    model = create_model(model_name, manifest.num_classes, manifest.channels).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    def train_step(images: torch.Tensor, labels: torch.Tensor) -> None:
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    train_step(*next(iter(loader)))  # warms up the loader and the model
    loader.set_epoch(1)
    waited, seen = 0.0, 0
    synchronize(device)
    started = time.perf_counter()
    batches = iter(loader)
    while True:
        asked = time.perf_counter()
        try:
            images, labels = next(batches)
        except StopIteration:
            break
        # DALI and the memory loader hand over batches whose device work may still be queued:
        # wait for it here, so that it counts as waiting for data.
        synchronize(device)
        waited += time.perf_counter() - asked
        train_step(images, labels)
        seen += len(labels)
    synchronize(device)
    total = time.perf_counter() - started
    return {"kind": loader.kind, "wait": waited / total, "images_per_s": seen / total}


def summary(rates: dict[str, list[float]], baseline: str = "torch") -> list[str]:
    """Table rows; the ratio to the baseline is taken within each round, then summarised."""
    rows = []
    for kind, values in rates.items():
        ratios = [value / base for value, base in zip(values, rates[baseline])]
        rows.append(
            f"| {kind} | {statistics.median(values):,.0f} ({min(values):,.0f}–"
            f"{max(values):,.0f}) | {statistics.median(ratios):.2f}× "
            f"({min(ratios):.2f}–{max(ratios):.2f}) |"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", type=Path, default=Path("data"))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=("throughput", "wait"))
    parser.add_argument(
        "--fmnist-subset",
        type=int,
        default=20000,
        help="train images per Fashion-MNIST epoch (0: all 60,000)",
    )
    parser.add_argument("--jpeg-images", type=int, default=1000)
    parser.add_argument(
        "--wait-subset",
        type=int,
        default=400,
        help="Fashion-MNIST images per data-wait epoch (JPEGs: a sixth)",
    )
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="smoke run: batches of 16 (JPEGs 4) and JPEGs read at 32 px, so a "
        "handful of images does; the figures mean nothing",
    )
    args = parser.parse_args()
    fmnist_batch, jpeg_batch, jpeg_size = (16, 4, 32) if args.tiny else (256, 64, 224)
    wait_batches = (16, 4) if args.tiny else (100, 32)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    device = torch.device(args.device)
    fmnist = ensure_dataset("fashion-mnist", args.data_root)
    jpegs = jpeg_dataset(args.data_root, args.jpeg_images)
    print(f"device {device}, torch threads {torch.get_num_threads()}, rounds {args.rounds}")

    lines = []
    if args.only in (None, "throughput"):
        for title, manifest, kinds, batch, subset, size in (
            (
                "Fashion-MNIST 28 px",
                fmnist,
                ["torch", "dali", "memory"],
                fmnist_batch,
                args.fmnist_subset,
                None,
            ),
            (f"{jpeg_size} px JPEG folder", jpegs, ["torch", "dali"], jpeg_batch, 0, jpeg_size),
        ):
            rates = throughput(
                manifest,
                kinds,
                rounds=args.rounds,
                batch_size=batch,
                subset=subset,
                device=device,
                image_size=size,
            )
            lines += [
                f"\n{title}, batch {batch}, {device}:",
                "",
                "| loader | images/s: median (range) | vs torch in the same round |",
                "|---|---|---|",
                *summary(rates),
            ]
    if args.only in (None, "wait"):
        lines += [
            "",
            f"Data wait in a vanilla epoch, {device}:",
            "",
            "| dataset, model, images, batch | loader | waiting | training images/s |",
            "|---|---|---|---|",
        ]
        for manifest, model, subset, batch, size in (
            (fmnist, "resnet18", args.wait_subset, wait_batches[0], None),
            (jpegs, "tv_resnet18", args.wait_subset // 6, wait_batches[1], jpeg_size),
        ):
            for kind in ("auto", "torch"):
                result = data_wait(
                    manifest,
                    kind,
                    subset=subset,
                    batch_size=batch,
                    device=device,
                    model_name=model,
                    image_size=size,
                )
                lines.append(
                    f"| {manifest.name}, {model}, {subset}, {batch} "
                    f"| {result['kind']}{' (auto)' * (kind == 'auto')} "
                    f"| {result['wait']:.1%} | {result['images_per_s']:.0f} |"
                )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
