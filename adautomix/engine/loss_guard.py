"""Stopping a run whose loss is no longer a number.

A NaN or infinite training loss (an lr of 1e6, a bad batch) poisons the weights in one update,
and from then on every number the run reports is meaningless; if training went on, it would end
FINISHED, checkpointed and ready to register. `LossGuard` counts such losses and stops the run
with a NonFiniteLossError once `RunConfig.nonfinite_loss_limit` of them were seen:

- limit 1 (the default): the losses are counted on the device, with no host sync of their own,
  and the count is read at the loop's existing syncs (every 10 steps, one process), before every
  checkpoint within an epoch, and at the end of the epoch (all processes, on the reduced epoch
  loss), before anything is evaluated, logged or checkpointed. The weights a bad loss touched
  are never saved.
- limit N > 1: each step's loss is read on the host (one sync per step; in a distributed run one
  tiny all-reduce, so every process skips the same steps) and a step with a non-finite loss is
  skipped: no update, no EMA, not in the epoch's mean loss (the mean over the steps that
  counted). The N-th stops the run.

`check_metrics` applies the same rule to the epoch's metrics (a NaN validation loss)."""

from __future__ import annotations

import math
from typing import Callable

import torch

from ..errors import RunFailure


class NonFiniteLossError(RunFailure):
    """Training produced more non-finite losses or metrics than the run allows."""


class LossGuard:
    def __init__(
        self,
        limit: int,
        device: torch.device,
        lr: float,
        reduce: Callable[[torch.Tensor], torch.Tensor] = lambda t: t,
    ):
        self.limit, self.lr, self.reduce = limit, lr, reduce
        self.seen = 0  # non-finite losses read on the host
        self.pending = torch.zeros((), dtype=torch.int64, device=device)  # not yet read (limit 1)

    def skip(self, loss: torch.Tensor, step: int, epoch: int) -> bool:
        """Whether to skip this step's update; call it after the loss, before the backward.
        `step` is the run's count of steps before this one, as `check` takes the count after."""
        bad = ~torch.isfinite(loss.detach())
        if self.limit == 1:
            self.pending += bad
            return False
        if not int(self.reduce(bad.to(torch.int64))):
            return False
        self.seen += 1
        if self.seen >= self.limit:
            self._stop(step + 1, epoch)  # this step counts as done: the steps so far
        return True

    def check(self, step: int, epoch: int) -> None:
        """Read the device count, summed over ranks: a host sync, so call it where the loop
        syncs anyway; in a distributed run, on every rank at once (the end of an epoch)."""
        if self.limit == 1:
            bad = int(self.reduce(self.pending.clone()))
            if bad:
                self.seen += bad
                self._stop(step, epoch)

    def check_metrics(self, metrics: dict[str, float], epoch: int) -> None:
        bad = {k: v for k, v in metrics.items() if isinstance(v, float) and not math.isfinite(v)}
        if bad:
            shown = ", ".join(f"{k} {v}" for k, v in sorted(bad.items()))
            raise NonFiniteLossError(
                f"training stopped after epoch {epoch + 1}: {shown}; the network diverged and "
                f"this epoch's end was not checkpointed. {self._fix()}"
            )

    def _stop(self, step: int, epoch: int) -> None:
        count = f"{self.seen} non-finite training loss{'es' if self.seen > 1 else ''}"
        raise NonFiniteLossError(
            f"training stopped at step {step} (epoch {epoch + 1}): {count} (NaN or inf), the "
            f"limit is {self.limit}; no weights it touched were checkpointed. {self._fix()}"
        )

    def _fix(self) -> str:
        return (
            f"Lower --lr (now {self.lr:g}), set --grad-clip, or raise --nonfinite-loss-limit "
            "to skip the steps with a bad loss"
        )
