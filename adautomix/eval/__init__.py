"""Evaluation: `evaluate(network, loader, metrics)` with metrics named in a list.

A metric is one of two kinds:
- a batch metric, `update(logits, labels)` then `compute()`: top-1, top-5, loss, ECE. All of them
  share one forward pass in inference mode, so adding one costs no pass;
- a protocol, `run(network, loader, precision) -> {name: value}`: evaluations that change the input
  or need its gradient and so make their own passes (FGSM, occlusion, corruptions).
After it ran, a metric with a `figure()` method can draw what it measured (reliability diagram,
occlusion curve, per-corruption bars).

A metric is named `NAME` or `NAME:KEY=VALUE[:KEY=VALUE...]` with its options (a list value joins
its items with `+`): `fgsm:epsilon=0.0157`, `ece:bins=15`, `occlusion:patch=4:ratios=0+0.25+0.5`,
`corruption:severities=1+3+5:corruptions=fog+snow`. The names each one reports (the MLflow metric
names, before the caller's `test_` prefix and `_ema` suffix) are in METRIC_OUTPUTS.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterable, Sequence

from torch import nn

from ..config import ConfigError
from .accuracy import MeanLoss, TopK
from .calibration import CalibrationError
from .corruption import CorruptionAccuracy
from .fgsm import FGSM
from .loop import predictions
from .occlusion import Occlusion

METRICS = {
    "top1": lambda: TopK(1),
    "top5": lambda: TopK(5),
    "loss": MeanLoss,
    "ece": CalibrationError,
    "fgsm": FGSM,
    "corruption": CorruptionAccuracy,
    "occlusion": Occlusion,
}
METRIC_OUTPUTS = {
    "top1": "top1 (%)",
    "top5": "top5 (%)",
    "loss": "loss (mean cross-entropy)",
    "ece": "ece, ece_paper (%, 10 bins; the paper's sorted-bins variant)",
    "fgsm": "fgsm_error, fgsm_error_paper (%, ε 8/255; pixel-space and the paper's variant)",
    "corruption": "corruption_top1 (pooled), corruption_top1_<corruption>, "
    "corruption_top1_s<1-5> (%)",
    "occlusion": "occlusion_top1_r<ratio>, occlusion_top1_mean (%)",
}


def parse_metric(spec: str) -> tuple[str, dict]:
    """`NAME:KEY=VALUE:...` -> (NAME, options), the name and option keys checked."""
    name, *pairs = spec.strip().split(":")
    if name not in METRICS:
        raise ConfigError(f"unknown metric {name!r}; valid: {', '.join(METRICS)}")
    options = {}
    for pair in pairs:
        key, equals, raw = pair.partition("=")
        if not equals:
            raise ConfigError(f"metric option {pair!r} in {spec!r} is not KEY=VALUE")
        items = [_value(item) for item in raw.split("+")]
        options[key.strip()] = items if "+" in raw else items[0]
    accepted = [p for p in inspect.signature(METRICS[name]).parameters if p not in ("mean", "std")]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ConfigError(
            f"metric {name} has no option(s) {unknown}; valid: {', '.join(accepted) or 'none'}"
        )
    return name, options


def create_metric(spec: str, **defaults):
    """A fresh metric object from its spec string; `defaults` (such as progress=False) apply
    where the metric takes them and the spec does not set them."""
    name, options = parse_metric(spec)
    factory = METRICS[name]
    accepted = inspect.signature(factory).parameters
    options = {**{k: v for k, v in defaults.items() if k in accepted}, **options}
    return factory(**options)


def check_metrics(specs: Sequence[str]) -> list[str]:
    """Build every metric once, so a bad name or option fails before any data is read."""
    specs = [s.strip() for s in specs if s.strip()]
    if not specs:
        raise ConfigError(f"no metric given; valid: {', '.join(METRICS)}")
    for spec in specs:
        create_metric(spec)
    return specs


def evaluate(
    network: nn.Module,
    loader: Iterable,
    metrics: Sequence = ("top1", "top5", "loss"),
    precision: str = "fp32",
    sharded: bool = False,
) -> dict[str, float]:
    """Every metric's values on the loader. `metrics` holds spec strings or metric objects; pass
    objects to draw their figures afterwards. `precision`: the forward passes' autocast
    (adautomix/precision.py).

    The batch metrics keep their sums on the loader's device and are read once, after the last
    batch: nothing waits on the device batch by batch.

    `sharded`: the loader reads this rank's shard of the split; the metrics' sums and counts
    are all-reduced over the ranks, so every rank returns the whole split's figures."""
    objects = [create_metric(m) if isinstance(m, str) else m for m in metrics]
    batch = [m for m in objects if hasattr(m, "update")]
    results: dict[str, float] = {}
    if batch:
        for logits, labels in predictions(network, loader, precision):
            for metric in batch:
                metric.update(logits, labels)
        for metric in batch:
            if sharded:
                metric.all_reduce()
            value = metric.compute()
            results.update(value if isinstance(value, dict) else {metric.name: value})
    for metric in objects:
        if not hasattr(metric, "update"):
            results.update(metric.run(network, loader, precision, sharded=sharded))
    return results


def _value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text
