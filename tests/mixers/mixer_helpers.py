"""Helpers shared by the mixer tests: a seeded batch, a seeded (model, method) pair on the tiny
backbone, weights pushed far from their init, and the logs of a step's loss parts."""

from __future__ import annotations

import torch

from tests.tiny_backbone import TinyBackbone


def batch(seed=0, size=8, classes=10):
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(size, 3, 16, 16, generator=g)
    return images, torch.randint(0, classes, (size,), generator=g)


def setup(cls, seed=0, **options):
    """A TinyBackbone and method `cls` on it, both initialised from `seed`."""
    torch.manual_seed(seed)
    model = TinyBackbone(num_classes=10)
    return model, cls(model, num_classes=10, **options)


def perturb(module, seed=1, scale=0.5):
    """Weights far from the near-zero init, so generated masks differ clearly from linear ones and
    vary in space and across images. Returns the module."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)
    return module


def all_logs(method, model, images, labels, step):
    logs = {}
    for _, part_logs in method.loss_parts(model, images, labels, step):
        logs.update(part_logs)
    return logs
