"""Runs from MLflow -> the paper's tables and a bar chart.

Runs pool only when they computed the same thing: a *setting* is a run's whole logged config (its
params) and data hash, less the seed, the method and its options, and the fields that only say
where or how visibly a run happened. Each setting gets one table (a 1-epoch debug run and an
800-epoch run are two settings, never one cell), with one row per method: the number of seeds,
mean ± std over seeds of the headline metric, its Δ to Vanilla in the same setting, and the
robustness metrics beside it as in the paper's Table 3; the best value of each column in bold.
A seed run twice counts once, by its latest run.

The headline is the first metric of `metric` a run logged: by default the median test top-1 of
the last 10 epochs of the EMA network (the paper's statistic), else the online network's."""

from __future__ import annotations

import csv
import io
import math
import re
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import DATASETS, METHODS, UNCOMPUTED_FIELDS
from .errors import InputError

# Preference order per run. The val_ names are the paper protocol's runs from before the
# validation split, whose val_ metrics were measured on the test split.
HEADLINE = (
    "test_top1_ema_median10",
    "test_top1_median10",
    "val_top1_ema_median10",
    "val_top1_median10",
)
# The summary figures of adautomix.eval, in Table 3's order after the evaluated network's clean
# top-1 (docs/evaluation.md); the per-corruption, per-severity and per-ratio breakdowns stay in
# the run (and its figures), out of the table. Any other test metric can be named instead.
ROBUSTNESS_METRICS = (
    "corruption_top1",
    "fgsm_error",
    "fgsm_error_paper",
    "ece",
    "ece_paper",
    "occlusion_top1_mean",
)
CLEAN_TOP1 = "top1"  # shown beside them, so that a drop is read against the same network
# Where they are found, in preference order: the evaluate step's measure of the selected
# checkpoint, then a plain test_ metric.
ROBUSTNESS_PREFIXES = ("selected_test_", "test_")
# Params left out of the setting: the seed (a setting's cells average over seeds) and the fields
# that do not change what a run computes (config.UNCOMPUTED_FIELDS).
UNPOOLED_PARAMS = ("seed", *UNCOMPUTED_FIELDS)
# Params that say which method a run trained, and with which options: a row, not a setting.
METHOD_PARAM = "method"
# (method_args.KEY: the options given; method.KEY: every option resolved, defaults included)
METHOD_OPTION_PREFIXES = ("method_args.", "method.")
# Tags that are part of what a run computed (the data it read).
SETTING_TAGS = ("data_hash",)
LOWER_IS_BETTER = re.compile(r"error|loss|ece|nll", re.IGNORECASE)
FORMATS = ("markdown", "csv", "latex")
HEADLINE_KEY = ""  # the headline's slot among a cell's metrics


class CompareError(InputError):
    """The runs of an experiment cannot be compared; the message says why and what to do."""


@dataclass(frozen=True)
class Stat:
    """One cell: a metric over the seeds of a setting and method."""

    values: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.mean(self.values)

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.values) if self.n > 1 else None


@dataclass
class Setting:
    key: tuple[tuple[str, str], ...]  # (param or tag, value), sorted
    label: str = ""  # dataset/model and what tells it from the others
    # method row -> metric -> value per seed
    cells: dict[str, dict[str, list[float]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list))
    )

    @property
    def values(self) -> dict[str, str]:
        return dict(self.key)

    @property
    def epochs(self) -> int | None:
        try:
            return int(self.values["epochs"])
        except (KeyError, ValueError):
            return None


@dataclass
class Comparison:
    experiment: str
    metric: str  # the headline's display name (the first found)
    candidates: tuple[str, ...]  # the headline's preference order
    settings: list[Setting]
    rows: list[str]  # method rows, in the paper's order
    robustness: list[str]  # robustness metric names, in order
    notes: list[str] = field(default_factory=list)

    def stat(self, setting: Setting, row: str, metric: str) -> Stat | None:
        values = setting.cells.get(row, {}).get(metric)
        return Stat(tuple(values)) if values else None


# --- grouping ------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)  # one run is one row of the store: identity is equality
class _Run:
    run_id: str
    start_time: int
    method: str
    options: tuple[tuple[str, str], ...]
    seed: str
    setting: tuple[tuple[str, str], ...]
    metrics: dict[str, float]


def collect(
    runs: Iterable[dict[str, Any]],
    experiment: str = "",
    metric: Sequence[str] = HEADLINE,
    robustness: Sequence[str] | None = None,
    ignore: Sequence[str] = (),
) -> Comparison:
    """Group finished runs ({"run_id", "start_time", "params", "tags", "metrics"}, as
    tracking.experiment_runs gives them). `metric` is the headline's preference order per run;
    `robustness` the test metric names to set beside it (None: ROBUSTNESS_METRICS, with the
    evaluated network's clean top-1 first where a run logged any of them);
    `ignore` params or tags left out of the setting, to pool runs that differ only in them."""
    notes: list[str] = []
    parsed, lacking = [], 0
    for run in runs:
        found = parse_run(run, ignore)
        if found is None or not any(m in found.metrics for m in metric):
            lacking += 1
            continue
        parsed.append(found)
    if lacking:
        notes.append(
            f"{lacking} finished run(s) without a method tag or any of {', '.join(metric)} left out"
        )

    latest: dict[tuple, _Run] = {}
    for run in sorted(parsed, key=lambda r: r.start_time):
        latest[run.setting, run.method, run.options, run.seed] = run
    if len(latest) < len(parsed):
        notes.append(
            f"{len(parsed) - len(latest)} older run(s) of a seed already run left out "
            "(the latest run of each seed counts)"
        )
    deduped = list(latest.values())

    row_of = _row_labels(deduped)
    names = list(robustness) if robustness is not None else [CLEAN_TOP1, *ROBUSTNESS_METRICS]
    headline_used: set[str] = set()
    settings: dict[tuple, Setting] = {}
    for run in deduped:
        setting = settings.setdefault(run.setting, Setting(run.setting))
        cells = setting.cells[row_of[run]]
        name = next(m for m in metric if m in run.metrics)
        headline_used.add(name)
        cells[HEADLINE_KEY].append(run.metrics[name])
        # by default the clean top-1 goes only beside robustness figures, not alone
        shown = (
            names
            if robustness is not None
            or any(_served(run.metrics, n) is not None for n in ROBUSTNESS_METRICS)
            else []
        )
        for robust in shown:
            value = _served(run.metrics, robust)
            if value is not None:
                cells[robust].append(value)
    if len(headline_used) > 1:
        used = [m for m in metric if m in headline_used]
        notes.append(f"headline: {used[0]}; {', '.join(used[1:])} for runs without it")

    ordered = sorted(settings.values(), key=_setting_order)
    _label_settings(ordered)
    rows = sorted(
        {r for s in ordered for r in s.cells}, key=lambda r: (_rank(r.split(" ")[0], METHODS), r)
    )
    names = [n for n in names if any(n in c for s in ordered for c in s.cells.values())]
    used = [m for m in metric if m in headline_used]
    return Comparison(
        experiment, used[0] if used else metric[0], tuple(metric), ordered, rows, names, notes
    )


def check_comparable(comparison: Comparison) -> None:
    """Runs that share no setting cannot be set side by side: say what tells them apart."""
    if not comparison.settings:
        raise CompareError(
            f"experiment {comparison.experiment!r} has no finished runs with a "
            f"method and any of {', '.join(comparison.candidates)}; train and "
            "evaluate some first, or name the metric with --metric"
        )
    settings = comparison.settings
    # One method over several settings is a budget or recipe study, and its tables say so; several
    # methods that never met in one setting is a comparison that cannot be made.
    if len(comparison.rows) > 1 and all(len(s.cells) == 1 for s in settings):
        differ = _differing(settings)
        raise CompareError(
            f"experiment {comparison.experiment!r}: its runs share no common config (every "
            f"setting holds one method; they differ in {', '.join(differ) or 'their data'}); "
            "compare runs that differ only in method and seed, or pool over a field with "
            "--ignore FIELD"
        )


def parse_run(run: dict[str, Any], ignore: Sequence[str] = ()) -> _Run | None:
    """A run's method, options, seed and setting (the rest of its params and SETTING_TAGS);
    None for a run that names no method."""
    params, tags = dict(run.get("params") or {}), run.get("tags") or {}
    for name in ("method", "dataset", "model", "seed"):  # runs that logged tags only
        if name not in params and name in tags:
            params[name] = tags[name]
    if METHOD_PARAM not in params:
        return None
    skip = set(UNPOOLED_PARAMS) | set(ignore) | {METHOD_PARAM}
    options = tuple(
        sorted(
            (k, v)
            for k, v in params.items()
            if k.startswith(METHOD_OPTION_PREFIXES) and k not in skip
        )
    )
    setting = {
        k: v
        for k, v in params.items()
        if k not in skip and not k.startswith(METHOD_OPTION_PREFIXES)
    }
    setting.update({t: tags[t] for t in SETTING_TAGS if t in tags and t not in skip})
    return _Run(
        run_id=run.get("run_id", ""),
        start_time=run.get("start_time") or 0,
        method=params[METHOD_PARAM],
        options=options,
        seed=params.get("seed", run.get("run_id", "")),  # no seed: its own run
        setting=tuple(sorted(setting.items())),
        metrics=run.get("metrics") or {},
    )


def _row_labels(runs: list[_Run]) -> dict[_Run, str]:
    by_method: dict[str, set] = defaultdict(set)
    for run in runs:
        by_method[run.method].add(run.options)
    return {run: row_label(run, by_method[run.method]) for run in runs}


def row_label(run: _Run, variants: set) -> str:
    """The method's name, and its options where the same method ran with other ones
    (`variants`: the option sets its method ran with)."""
    if len(variants) == 1:
        return run.method
    differ = {k for k, _ in set().union(*variants) if len({dict(v).get(k) for v in variants}) > 1}
    shown = ", ".join(f"{k.split('.', 1)[-1]}={v}" for k, v in run.options if k in differ)
    return f"{run.method} ({shown})"


def _served(metrics: dict[str, float], name: str) -> float | None:
    """A robustness metric of the network a run is judged by: its EMA one when it has one."""
    for key in (f"{p}{name}{suffix}" for p in ROBUSTNESS_PREFIXES for suffix in ("_ema", "")):
        if key in metrics:
            return metrics[key]
    return None


def _setting_order(setting: Setting):
    values = setting.values
    return (
        _rank(values.get("dataset", ""), DATASETS),
        values.get("dataset", ""),
        values.get("model", ""),
        setting.epochs or 0,
        setting.key,
    )


def _differing(settings: list[Setting]) -> list[str]:
    keys = sorted({k for s in settings for k, _ in s.key})
    return [k for k in keys if len({s.values.get(k) for s in settings}) > 1]


def _label_settings(settings: list[Setting]) -> None:
    """dataset/model, and the fields that tell it from the settings of the same dataset/model."""
    families: dict[tuple[str, str], list[Setting]] = defaultdict(list)
    for s in settings:
        families[s.values.get("dataset", "?"), s.values.get("model", "?")].append(s)
    for (dataset, model), members in families.items():
        differ = _differing(members) if len(members) > 1 else []
        for s in members:
            extra = ", ".join(f"{k}={_short(s.values.get(k, '-'))}" for k in differ)
            s.label = f"{dataset}/{model}" + (f" ({extra})" if extra else "")


def _short(value: str) -> str:
    return value[:8] if re.fullmatch(r"[0-9a-f]{16,}", value) else value


def _rank(name: str, order: tuple[str, ...]) -> int:
    return order.index(name) if name in order else len(order)


# --- what a metric means -------------------------------------------------------------------------


def lower_is_better(metric: str) -> bool:
    return bool(LOWER_IS_BETTER.search(metric))


def describe(metric: str, epochs: int | None) -> str:
    """The metric's name, and how many epochs its median covers when it is a last-10 median."""
    if not metric.endswith("_median10"):
        return metric
    covered = f"{min(10, epochs)}" if epochs else "up to 10"
    return f"{metric.removesuffix('_median10')}, median of the last {covered} epoch" + (
        "" if epochs == 1 else "s"
    )


# --- tables --------------------------------------------------------------------------------------


@dataclass
class _Table:
    title: str
    header: list[str]
    rows: list[list[Any]]  # str (row label), int (seeds), Stat | None, float | None (Δ)
    best: set[tuple[int, int]]  # (row, column) of each column's best value
    robustness: list[str]  # the metric names of the columns after Δ


def tables(comparison: Comparison) -> list[_Table]:
    """One table per setting: method, seeds, the headline, Δ to Vanilla, robustness metrics."""
    out = []
    for setting in comparison.settings:
        rows = [r for r in comparison.rows if r in setting.cells]
        metrics = [HEADLINE_KEY] + [
            n for n in comparison.robustness if any(n in setting.cells[r] for r in rows)
        ]
        vanilla = comparison.stat(setting, "vanilla", HEADLINE_KEY)
        body, best = [], set()
        for r in rows:
            stats = [comparison.stat(setting, r, m) for m in metrics]
            head = stats[0]
            delta = head.mean - vanilla.mean if head and vanilla and r != "vanilla" else None
            body.append([r, head.n if head else 0, stats[0], delta, *stats[1:]])
        for j, m in enumerate(metrics):
            column = 2 if j == 0 else 3 + j
            means = {i: row[column].mean for i, row in enumerate(body) if row[column]}
            if len(means) > 1:
                pick = min if lower_is_better(m or comparison.metric) else max
                target = pick(means.values())
                best |= {(i, column) for i, v in means.items() if v == target}
        header = [
            "method",
            "seeds",
            describe(comparison.metric, setting.epochs),
            "Δ vs vanilla",
            *(f"clean {m}" if m == CLEAN_TOP1 else m for m in metrics[1:]),
        ]
        out.append(_Table(setting.label, header, body, best, metrics[1:]))
    return out


def format_comparison(comparison: Comparison, fmt: str = "markdown") -> str:
    if fmt not in FORMATS:
        raise CompareError(f"unknown format {fmt!r}; valid: {', '.join(FORMATS)}")
    found = tables(comparison)
    if fmt == "csv":
        return _csv(comparison, found)
    render = _markdown if fmt == "markdown" else _latex
    header = f"experiment {comparison.experiment}: mean ± std over seeds, %"
    parts = [render(t) for t in found]
    notes = [f"note: {n}" for n in comparison.notes]
    if fmt == "latex":
        return "\n\n".join([f"% {header}", *parts, *(f"% {n}" for n in notes)])
    return "\n\n".join([header, *parts, *notes])


def _value(cell: Any, bold: bool, fmt: str) -> str:
    if cell is None:
        return "-"
    if isinstance(cell, str):
        return cell if fmt == "markdown" else _latex_escape(cell)
    if isinstance(cell, int):
        return str(cell)
    if isinstance(cell, float):  # Δ
        return f"{cell:+.2f}" if fmt == "markdown" else f"${cell:+.2f}$"
    if fmt == "latex":
        text = f"{cell.mean:.2f}" + (f" \\pm {cell.std:.2f}" if cell.std is not None else "")
        return f"$\\mathbf{{{text}}}$" if bold else f"${text}$"
    text = f"{cell.mean:.2f}" + (f" ± {cell.std:.2f}" if cell.std is not None else "")
    return f"**{text}**" if bold else text


def _markdown(table: _Table) -> str:
    cells = [
        [_value(c, (i, j) in table.best, "markdown") for j, c in enumerate(row)]
        for i, row in enumerate(table.rows)
    ]
    return "\n".join([f"**{table.title}**", "", *markdown_table(table.header, cells)])


def markdown_table(header: list[str], body: list[list[str]]) -> list[str]:
    """The lines of a Markdown table: names left-aligned, numbers right-aligned, padded."""
    widths = [max(len(r[j]) for r in [header, *body]) for j in range(len(header))]

    def render(row: list[str]) -> str:
        return (
            "| "
            + " | ".join(
                v.ljust(w) if j == 0 else v.rjust(w) for j, (v, w) in enumerate(zip(row, widths))
            )
            + " |"
        )

    rule = (
        "|"
        + "|".join(
            ("-" * (w + 1) + ":" if j else ":" + "-" * (w + 1)) for j, w in enumerate(widths)
        )
        + "|"
    )
    return [render(header), rule, *map(render, body)]


def _latex(table: _Table) -> str:
    spec = "l" + "r" * (len(table.header) - 1)
    lines = [
        f"% {_latex_escape(table.title)}",
        f"\\begin{{tabular}}{{{spec}}}",
        "\\toprule",
        " & ".join(_latex_escape(h) for h in table.header) + r" \\",
        "\\midrule",
    ]
    lines += [
        " & ".join(_value(c, (i, j) in table.best, "latex") for j, c in enumerate(row)) + r" \\"
        for i, row in enumerate(table.rows)
    ]
    return "\n".join([*lines, "\\bottomrule", "\\end{tabular}"])


def _latex_escape(text: str) -> str:
    text = text.replace("Δ", "$\\Delta$")
    return re.sub(r"([_%&#])", r"\\\1", text)


def _csv(comparison: Comparison, found: list[_Table]) -> str:
    """Long form, one line per setting, method and metric: what pandas wants."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        ["setting", "method", "metric", "seeds", "mean", "std", "delta_vs_vanilla", "best"]
    )
    for table in found:
        for i, row in enumerate(table.rows):
            columns = [(2, comparison.metric, row[3])] + [
                (4 + k, name, None) for k, name in enumerate(table.robustness)
            ]
            for column, name, delta in columns:
                stat = row[column]
                if stat is None:
                    continue
                writer.writerow(
                    [
                        table.title,
                        row[0],
                        name,
                        stat.n,
                        _num(stat.mean),
                        _num(stat.std),
                        _num(delta),
                        int((i, column) in table.best),
                    ]
                )
    return buffer.getvalue().rstrip("\n")


def _num(value: float | None) -> str:
    return "" if value is None or math.isnan(value) else f"{value:.4f}"


# --- the chart -----------------------------------------------------------------------------------


def bar_chart(comparison: Comparison, path: str | Path) -> Path:
    """The chart_figure as a PNG."""
    path = Path(path)
    chart_figure(comparison).savefig(path, dpi=120, bbox_inches="tight")
    return path


def chart_figure(comparison: Comparison):
    """One panel per setting, one bar per method (mean over seeds, std as error bars), the y-axis
    zoomed to the data, Vanilla's mean as a dashed line, the legend outside the panels."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle

    settings, rows = comparison.settings, comparison.rows
    colours = {r: colormaps["tab10"](i % 10) for i, r in enumerate(rows)}
    bars = [max(3, sum(1 for r in rows if r in s.cells)) for s in settings]  # room for titles
    fig = Figure(figsize=(1.5 + 0.45 * sum(bars) + 1.0 * len(settings), 3.8))
    axes = fig.subplots(1, len(settings), squeeze=False, gridspec_kw={"width_ratios": bars})
    for ax, setting in zip(axes[0], settings):
        stats = [(r, comparison.stat(setting, r, HEADLINE_KEY)) for r in rows]
        stats = [(r, s) for r, s in stats if s]
        xs = list(range(len(stats)))
        tops = [s.mean + (s.std or 0.0) for _, s in stats]
        ax.bar(xs, [s.mean for _, s in stats], 0.75, color=[colours[r] for r, _ in stats])
        spread = [(x, s) for x, (_, s) in zip(xs, stats) if s.std is not None]  # one seed: none
        if spread:
            ax.errorbar(
                [x for x, _ in spread],
                [s.mean for _, s in spread],
                yerr=[s.std for _, s in spread],
                fmt="none",
                ecolor="black",
                capsize=3,
                elinewidth=1,
            )
        low, high = min(s.mean - (s.std or 0.0) for _, s in stats), max(tops)
        margin = max((high - low) * 0.25, 0.5)
        ax.set_ylim(max(0.0, low - margin), min(100.0, high + margin))
        for x, top, (_, s) in zip(xs, tops, stats):
            ax.annotate(
                f"{s.mean:.1f}",
                (x, top),
                xytext=(0, 2),
                textcoords="offset points",
                ha="center",
                va="bottom",
                fontsize=7,
            )
        vanilla = comparison.stat(setting, "vanilla", HEADLINE_KEY)
        if vanilla:
            ax.axhline(vanilla.mean, color="black", linestyle="--", linewidth=0.8)
        ax.set_xticks(xs, [f"{r} (n={s.n})" for r, s in stats], rotation=45, ha="right", fontsize=8)
        ax.set_title(setting.label.replace(" (", "\n("), fontsize=9)
        ax.set_ylabel(
            describe(comparison.metric, setting.epochs).replace(", ", " (%)\n", 1), fontsize=8
        )
        ax.grid(axis="y", alpha=0.3)
    handles = [Rectangle((0, 0), 1, 1, color=colours[r]) for r in rows]
    labels = list(rows)
    if any(comparison.stat(s, "vanilla", HEADLINE_KEY) for s in settings):
        handles.append(Line2D([0], [0], color="black", linestyle="--", linewidth=0.8))
        labels.append("vanilla mean")
    fig.legend(
        handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False
    )
    fig.suptitle(f"{comparison.experiment}: mean over n seeds, error bars ± std", fontsize=10)
    fig.tight_layout()
    return fig


# --- the whole command ---------------------------------------------------------------------------


def compare(
    experiment: str,
    chart: str | Path | None = None,
    fmt: str = "markdown",
    metric: Sequence[str] = HEADLINE,
    robustness: Sequence[str] | None = None,
    ignore: Sequence[str] = (),
) -> str:
    """The tables for an MLflow experiment; the bar chart goes to `chart` (a PNG path) if given."""
    from .tracking import experiment_runs

    comparison = collect(experiment_runs(experiment), experiment, metric, robustness, ignore)
    check_comparable(comparison)
    if chart is not None:
        bar_chart(comparison, chart)
    return format_comparison(comparison, fmt)
