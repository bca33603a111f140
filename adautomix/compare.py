"""Runs from MLflow -> the paper's table and a bar chart.

The table has one row per method and one column per dataset/model, like the paper's. A cell is the
median EMA top-1 of the run's last 10 epochs (the online network's where a run kept no EMA),
averaged over seeds, with the spread over seeds when there are several. The robustness and
calibration figures the evaluation logged (ROBUSTNESS_METRICS, as `test_NAME[_ema]`; their
meaning is in docs/evaluation.md) get a table of their own per dataset/model, beside clean test
top-1 as the paper's Table 3 sets them."""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import DATASETS, METHODS

HEADLINE = ("val_top1_ema_median10", "val_top1_median10")
# The summary figures of adautomix.eval, in Table 3's order after clean top-1; the per-corruption,
# per-severity and per-ratio breakdowns stay in the run (and its figures), out of the table.
ROBUSTNESS_METRICS = ("corruption_top1", "fgsm_error", "fgsm_error_paper", "ece", "ece_paper",
                      "occlusion_top1_mean")


@dataclass
class Comparison:
    experiment: str
    # (method, "dataset/model") -> one value per seed
    top1: dict[tuple[str, str], list[float]] = field(default_factory=lambda: defaultdict(list))
    # "dataset/model" -> (method, metric) -> one value per seed
    robustness: dict[str, dict[tuple[str, str], list[float]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list)))

    @property
    def methods(self) -> list[str]:
        return _ordered({m for m, _ in self.top1}, METHODS)

    @property
    def columns(self) -> list[str]:
        found = {c for _, c in self.top1}
        return sorted(found, key=lambda c: (_rank(c.split("/")[0], DATASETS), c))


def collect(runs: list[dict[str, Any]], experiment: str = "") -> Comparison:
    """Group finished runs ({"tags", "metrics"}, as tracking.experiment_runs gives them)."""
    comparison = Comparison(experiment)
    for run in runs:
        tags, metrics = run["tags"], run["metrics"]
        headline = next((metrics[k] for k in HEADLINE if k in metrics), None)
        if headline is None or not {"method", "dataset", "model"} <= tags.keys():
            continue
        method, column = tags["method"], f"{tags['dataset']}/{tags['model']}"
        comparison.top1[method, column].append(headline)
        for name, value in _robustness(metrics).items():
            comparison.robustness[column][method, name].append(value)
    return comparison


def format_table(comparison: Comparison) -> str:
    if not comparison.top1:
        return (f"experiment {comparison.experiment!r} has no finished runs with a top-1 "
                "history; train some first")
    lines = [f"median top-1 of the last 10 epochs (EMA), %  -  experiment {comparison.experiment}",
             _table(comparison.methods, comparison.columns,
                    lambda m, c: comparison.top1.get((m, c)))]
    for column in comparison.columns:
        table = comparison.robustness.get(column)
        if table and {n for _, n in table} - {"top1"}:
            names = _ordered({n for _, n in table}, ("top1", *ROBUSTNESS_METRICS))
            methods = _ordered({m for m, _ in table}, METHODS)
            lines += ["", f"robustness, {column}",
                      _table(methods, names, lambda m, n: table.get((m, n)))]
    return "\n".join(lines)


def bar_chart(comparison: Comparison, path: str | Path) -> Path:
    """Grouped bars: one group per dataset/model, one bar per method, seed spread as error bars."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods, columns = comparison.methods, comparison.columns
    width = 0.8 / max(len(methods), 1)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(columns) * max(len(methods), 1) * 0.5), 3.6))
    for i, method in enumerate(methods):
        values = [comparison.top1.get((method, c), []) for c in columns]
        xs = [j + (i - (len(methods) - 1) / 2) * width for j in range(len(columns))]
        ax.bar(xs, [statistics.mean(v) if v else 0.0 for v in values], width, label=method,
               yerr=[statistics.stdev(v) if len(v) > 1 else 0.0 for v in values], capsize=2)
    ax.set_xticks(range(len(columns)), columns)
    ax.set(ylabel="top-1 (%), median of last 10 epochs", title=comparison.experiment)
    ax.legend(fontsize=7, ncols=min(len(methods), 5))
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def compare(experiment: str, chart: str | Path | None = None) -> str:
    """The table for an MLflow experiment; the bar chart goes to `chart` (a PNG path) if given."""
    from .tracking import experiment_runs

    comparison = collect(experiment_runs(experiment), experiment)
    if chart is not None and comparison.top1:
        bar_chart(comparison, chart)
    return format_table(comparison)


def _robustness(metrics: dict[str, float]) -> dict[str, float]:
    """test_NAME of the network a run is judged by (its EMA one when it has one), for clean
    top-1 and the robustness summaries."""
    out = {}
    for name in ("top1", *ROBUSTNESS_METRICS):
        value = metrics.get(f"test_{name}_ema", metrics.get(f"test_{name}"))
        if value is not None:
            out[name] = value
    return out


def _cell(values: list[float] | None) -> str:
    if not values:
        return "-"
    mean = statistics.mean(values)
    return f"{mean:.2f} ± {statistics.stdev(values):.2f}" if len(values) > 1 else f"{mean:.2f}"


def _table(rows: list[str], columns: list[str], values) -> str:
    cells = [[row, *(_cell(values(row, c)) for c in columns)] for row in rows]
    header = ["method", *columns]
    widths = [max(len(r[i]) for r in [header, *cells]) for i in range(len(header))]

    def render(row: list[str]) -> str:   # names left-aligned, numbers right-aligned
        return "  ".join(v.ljust(w) if i == 0 else v.rjust(w)
                         for i, (v, w) in enumerate(zip(row, widths)))

    return "\n".join([render(header), render(["-" * w for w in widths]), *map(render, cells)])


def _rank(name: str, order: tuple[str, ...]) -> int:
    return order.index(name) if name in order else len(order)


def _ordered(names: set[str], order: tuple[str, ...]) -> list[str]:
    return sorted(names, key=lambda n: (_rank(n, order), n))
