"""The registry gate: what a model must score before it may hold an alias (registry.py).

Its own module, free of MLflow, so that a pipeline's parameter check can validate a gate without
importing the tracking client."""

from __future__ import annotations

from dataclasses import dataclass

from .config import ConfigError
from .errors import RunFailure

# Percentage points above chance a candidate needs by default: 10 classes then need 15 %. A model
# at chance has learned nothing, whatever its logged loss says.
CHANCE_MARGIN = 5.0


class GateRejected(RunFailure):
    """The gate rejected every candidate: the message says which version and why."""


@dataclass(frozen=True)
class Gate:
    """What a model must score (top-1, %) to hold an alias: more than `chance_margin` points
    above chance, and at least `min_score` (0: no floor beyond chance)."""

    chance_margin: float = CHANCE_MARGIN
    min_score: float = 0.0

    def __post_init__(self) -> None:
        for name in ("chance_margin", "min_score"):
            value = getattr(self, name)
            if not 0.0 <= value <= 100.0:
                raise ConfigError(f"gate {name} must be in [0, 100] (top-1 in %), got {value}")

    def rejection(self, metric: str, score: float, chance: float) -> str:
        """'' when `score` passes, else the reason it does not."""
        above = chance + self.chance_margin
        if score <= above:
            return (
                f"{metric} {score:.4g} % is not above chance ({chance:.4g} %) by more than "
                f"the gate's margin of {self.chance_margin:.4g} points ({above:.4g} %)"
            )
        if score < self.min_score:
            return (
                f"{metric} {score:.4g} % is below the gate's minimum score {self.min_score:.4g} %"
            )
        return ""
