"""Top-k accuracy and mean cross-entropy on a labelled split."""

from __future__ import annotations

import torch
import torch.nn.functional as F


class TopK:
    """Accumulates correct top-k predictions on the device; one host sync at the end."""

    def __init__(self, k: int):
        self.k = k
        self.name = f"top{k}"
        self.correct = None
        self.count = 0

    def update(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        k = min(self.k, logits.shape[1])
        hit = (logits.topk(k, dim=1).indices == labels.view(-1, 1)).any(dim=1).sum()
        self.correct = hit if self.correct is None else self.correct + hit
        self.count += labels.shape[0]

    def compute(self) -> float:
        return 100.0 * float(self.correct) / max(self.count, 1)


class MeanLoss:
    name = "loss"

    def __init__(self):
        self.total = None
        self.count = 0

    def update(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        loss = F.cross_entropy(logits.float(), labels, reduction="sum")
        self.total = loss if self.total is None else self.total + loss
        self.count += labels.shape[0]

    def compute(self) -> float:
        return float(self.total) / max(self.count, 1)
