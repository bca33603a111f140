"""Evaluation at GPU speed: whatever the batch size, `evaluate` gives the figures of one pass over
the whole split computed independently here, and it reads nothing back from the device batch by
batch (the sums stay on the device until the end), so a GPU never waits on the host mid-split."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torchmetrics.functional.classification import multiclass_calibration_error

from adautomix.eval import evaluate
from tests.tiny_backbone import TinyBackbone

METRICS = ("top1", "top5", "loss", "ece")


def split(count: int = 103, classes: int = 10, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(count, 3, 16, 16, generator=g),
        torch.randint(0, classes, (count,), generator=g),
    )


def batches(images, labels, size: int):
    return [(images[i : i + size], labels[i : i + size]) for i in range(0, len(labels), size)]


def network():
    torch.manual_seed(0)
    model = TinyBackbone(num_classes=10)
    with torch.no_grad():  # confident, varied predictions: the ECE bins and top-5 matter
        model.head.weight.mul_(20)
    return model.eval()


def reference(model, images, labels) -> dict[str, float]:
    """The figures from one forward pass over the whole split, by other code than the metrics'."""
    with torch.no_grad():
        logits = model(images).double()
    ranked = logits.argsort(dim=1, descending=True)
    top5 = sum(int(label in row[:5].tolist()) for row, label in zip(ranked, labels.tolist()))
    return {
        "top1": 100 * (ranked[:, 0] == labels).double().mean().item(),
        "top5": 100 * top5 / len(labels),
        "loss": F.cross_entropy(logits, labels).item(),
        "ece": 100
        * multiclass_calibration_error(
            logits.float().softmax(1), labels, 10, n_bins=10, norm="l1"
        ).item(),
    }


@pytest.mark.parametrize("size", [1, 10, 103, 1000])
def test_every_batch_size_gives_the_one_pass_figures(size):
    model, (images, labels) = network(), split()
    expected = reference(model, images, labels)
    got = evaluate(model, batches(images, labels, size), METRICS)
    assert 20 < expected["top5"] < 100 and expected["ece"] > 1  # a case where each can be wrong
    for name, value in expected.items():
        assert math.isclose(got[name], value, rel_tol=1e-5, abs_tol=1e-4), (name, size)


class HostReads(TorchDispatchMode):
    """Counts the reads of a tensor's value by the host (.item(), float(), int(), bool(): each
    one waits for the device to finish)."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        # item, or what it becomes outside inference mode
        if func in (torch.ops.aten.item.default, torch.ops.aten._local_scalar_dense.default):
            self.count += 1
        return func(*args, **(kwargs or {}))


def test_the_host_reads_the_sums_once_whatever_the_batch_count():
    model, (images, labels) = network(), split()
    reads = {}
    for size in (50, 5):  # 3 and 21 batches
        with HostReads() as counter:
            evaluate(model, batches(images, labels, size), METRICS)
        reads[size] = counter.count
    assert reads[50] == reads[5]


@pytest.mark.gpu
def test_on_cuda_evaluation_never_synchronises_batch_by_batch():
    """CUDA's sync debug mode raises at any synchronising call: the batch loop must make none."""
    from adautomix.eval import create_metric
    from adautomix.eval.loop import predictions

    model, (images, labels) = network().cuda(), split()
    loader = [(x.cuda(), y.cuda()) for x, y in batches(images, labels, 10)]
    metrics = [create_metric(m) for m in METRICS]
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for logits, batch_labels in predictions(model, loader, "bf16"):
            for metric in metrics:
                metric.update(logits, batch_labels)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert 0 <= metrics[0].compute() <= 100
