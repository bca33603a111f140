"""What the passes a learned-mixing step is made of cost on their own, against a vanilla step.

AdAutoMix's step is the EMA network's clean forward (no grad), its forward on the generated mix
with a backward to the input only (the generator's gradient), and three online forward+backward
passes; AutoMix's has two online passes. Their sum is the floor of the step-cost ratio that
`bench/step_cost.py` measures, whatever the implementation:

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python bench/pass_cost.py --threads 2

Both memory formats are measured, one after the other: the engine's default channels_last and
PyTorch's default NCHW ("contiguous").
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from adautomix.models import create_model


def median_seconds(work, repeats: int) -> float:
    work()  # allocations and one-time costs
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--num-classes", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument(
        "--width", type=int, default=0, help="CIFAR-stem ResNets' width (0: the paper's 64) [0]"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    images = torch.randn(args.batch_size, 3, args.image_size, args.image_size)
    labels = torch.randint(0, args.num_classes, (args.batch_size,))
    print(
        f"{args.model}, {args.image_size} px, batch {args.batch_size}, "
        f"{torch.get_num_threads()} threads; median of {args.repeats}"
    )
    for memory_format in (torch.channels_last, torch.contiguous_format):
        torch.manual_seed(0)
        online = create_model(args.model, args.num_classes, width=args.width).to(
            memory_format=memory_format
        )
        frozen = create_model(args.model, args.num_classes, width=args.width).to(
            memory_format=memory_format
        )
        print(f"{str(memory_format).removeprefix('torch.')}:")
        report(online, frozen.requires_grad_(False), images, labels, args.repeats)


def report(online, frozen, images, labels, repeats: int) -> None:
    optimizer = torch.optim.SGD(online.parameters(), lr=0.1, momentum=0.9)
    mixed = images.clone().requires_grad_(True)

    def vanilla_step():
        loss = F.cross_entropy(online(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def clean_ema_forward():
        with torch.no_grad():
            frozen(images)

    def ema_forward_and_input_backward():
        torch.autograd.grad(F.cross_entropy(frozen(mixed), labels), mixed)

    vanilla = median_seconds(vanilla_step, repeats)
    forward = median_seconds(clean_ema_forward, repeats)
    generator = median_seconds(ema_forward_and_input_backward, repeats)
    print(
        f"  vanilla step {vanilla:.2f} s; forward F {forward:.2f} s (vanilla = "
        f"{vanilla / forward:.2f}F); EMA forward + input backward {generator:.2f} s "
        f"({generator / forward:.2f}F)"
    )
    for name, online_passes in (("AutoMix", 2), ("AdAutoMix (N >= 3)", 3)):
        floor = (forward + generator + online_passes * vanilla) / vanilla
        print(
            f"  {name}: floor {floor:.2f}x vanilla (EMA clean pass + generator pass + "
            f"{online_passes} online passes)"
        )


if __name__ == "__main__":
    main()
