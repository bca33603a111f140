"""Calibration: expected calibration error (ECE), standard and as the paper's code computes it,
and the reliability diagram.

Confidence is the top softmax probability; the M bins are (m/M, (m+1)/M]. Standard ECE is
Σ_m (B_m/N)·|acc_m − conf_m|, with B_m samples in bin m, acc_m their accuracy and conf_m their mean
confidence (what torchmetrics' multiclass_calibration_error computes, norm "l1"). The paper's code
(ADAM `ece_score`, spec §7.4) sorts the acc and conf arrays independently, empty bins counting as 0,
before the same weighted sum with the unsorted B_m: bins are paired by rank, not by confidence, so
it is not an ECE, but it is what the paper's numbers are. Both are reported in percent.

Only three sums per bin are kept (count, correct, confidence), so the metric is a batch metric of
the shared pass and costs no pass of its own."""

from __future__ import annotations

import torch

from ..config import ConfigError


class CalibrationError:
    name = "ece"
    figure_name = "reliability"

    def __init__(self, bins: int = 10):
        if not isinstance(bins, int) or isinstance(bins, bool) or bins < 1:
            raise ConfigError(f"ece bins must be a whole number >= 1, got {bins!r}")
        self.bins = bins
        self.sums = None  # bins × (count, correct, confidence), float64, on the logits' device

    def update(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        confidence, predicted = logits.float().softmax(dim=1).max(dim=1)
        index = (confidence * self.bins).ceil().long().clamp_(1, self.bins) - 1
        values = torch.stack(
            [torch.ones_like(confidence), (predicted == labels).float(), confidence], dim=1
        ).double()
        sums = torch.zeros(self.bins, 3, dtype=torch.float64, device=logits.device)
        sums.index_add_(0, index, values)
        self.sums = sums if self.sums is None else self.sums + sums

    def all_reduce(self) -> None:
        import torch.distributed as dist

        dist.all_reduce(self.sums)

    def per_bin(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(count, accuracy, mean confidence) of each bin on the CPU; 0 in empty bins."""
        if self.sums is None:
            raise ValueError("ece got no batches")
        count, correct, confidence = self.sums.cpu().unbind(dim=1)
        safe = count.clamp(min=1)
        return count, correct / safe, confidence / safe

    def compute(self) -> dict[str, float]:
        count, accuracy, confidence = self.per_bin()
        total = count.sum()
        standard = (count * (accuracy - confidence).abs()).sum() / total
        ranked = (count * (accuracy.sort().values - confidence.sort().values).abs()).sum() / total
        return {"ece": 100 * float(standard), "ece_paper": 100 * float(ranked)}

    def figure(self):
        """Reliability diagram: accuracy per confidence bin against the diagonal, the gap
        shaded, the share of samples per bin below."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        count, accuracy, confidence = (t.numpy() for t in self.per_bin())
        values = self.compute()
        width = 1.0 / self.bins
        centres = (torch.arange(self.bins).numpy() + 0.5) * width
        filled = count > 0
        fig, (top, bottom) = plt.subplots(
            2, 1, figsize=(4.2, 5.2), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
        )
        top.bar(centres[filled], accuracy[filled], width, edgecolor="black", label="accuracy")
        top.bar(
            centres[filled],
            (confidence - accuracy)[filled],
            width,
            bottom=accuracy[filled],
            color="red",
            alpha=0.3,
            edgecolor="red",
            label="gap to confidence",
        )
        top.plot([0, 1], [0, 1], "k--", linewidth=1)
        top.set(
            ylabel="accuracy",
            xlim=(0, 1),
            ylim=(0, 1),
            title=f"ECE {values['ece']:.2f}%  (paper's sorted bins {values['ece_paper']:.2f}%)",
        )
        top.legend(loc="upper left", fontsize=8)
        bottom.bar(centres, count / max(count.sum(), 1), width, color="grey", edgecolor="black")
        bottom.set(xlabel="confidence", ylabel="share")
        fig.tight_layout()
        return fig
