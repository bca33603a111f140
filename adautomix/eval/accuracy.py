"""Top-k accuracy and mean cross-entropy on a labelled split."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F


def summed_over_ranks(total: torch.Tensor, count: int) -> tuple[torch.Tensor, int]:
    """(total, count) summed over the ranks of the process group (every rank's shard holds at
    least one batch: the loader checks). float64 keeps the counts of any test set exact."""
    pair = torch.stack(
        [total.double(), torch.tensor(float(count), dtype=torch.float64, device=total.device)]
    )
    dist.all_reduce(pair)
    return pair[0], int(pair[1].item())


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

    def all_reduce(self) -> None:
        self.correct, self.count = summed_over_ranks(self.correct, self.count)

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

    def all_reduce(self) -> None:
        self.total, self.count = summed_over_ranks(self.total, self.count)

    def compute(self) -> float:
        return float(self.total) / max(self.count, 1)
