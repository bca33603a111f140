"""A sweep's results page, generated from the MLflow store: docs/results.md, its CSV and figures.

`write_results(experiment, page)` reads every run of the experiment (failed and killed ones too,
to say why a seed is missing), updates the seed groups' summary runs (seed_groups.py), and writes:
- the page: the command, commit, dates, machine and budget at the top; per method the mean ± std
  over seeds of the selected networks' top-1 on the whole test split (online and EMA), the
  paper's median of the last epochs, Δ to Vanilla with a Welch t-test p-value, the rank; Table
  3's robustness; what the pipeline cost per run; a paragraph read off the numbers;
- PAGE_STEM/table.csv (long form), seeds.png (every seed's point, the mean and ± std),
  curves.png (mean ± std over seeds per epoch), adautomix-samples.png (the mixed samples the
  AdAutoMix run of the lowest seed logged last).

Nothing on the page is typed: a second run on the same store gives the same bytes (the dates are
the runs', the PNGs carry no timestamp). Runs of more than one setting (budget) are refused, with
the settings that differ named."""

from __future__ import annotations

import csv
import io
import logging
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .compare import CompareError, Stat, markdown_table, parse_run
from .seed_groups import SeedGroup

log = logging.getLogger("adautomix.results")

# The headline figures, per network: the selected checkpoint (validation picks the epoch) on the
# whole test split, as the evaluate step measured it.
ONLINE, EMA = "selected_test_top1", "selected_test_top1_ema"
MEDIANS = ("test_top1_median10", "test_top1_ema_median10")
# Table 3, of the served (EMA) network: corruption top-1 and FGSM error on the fixed subset, ECE
# on the whole split.
ROBUSTNESS = (
    ("selected_test_corruption_top1_ema", "corruption top-1 ↑"),
    ("selected_test_fgsm_error_ema", "FGSM error ↓"),
    ("selected_test_fgsm_error_paper_ema", "FGSM error, paper's ↓"),
    ("selected_test_ece_ema", "ECE ↓"),
)
CURVE_METHODS = ("vanilla", "mixup", "automix", "adautomix")
CURVES = (("train_loss", "training loss"), ("test_top1_ema", "test top-1, EMA (%)"))
SIGNIFICANT = 0.05  # the p-value below which a Δ is said to exceed the seeds' spread
REFERENCE = "vanilla"
# The budget's fields shown at the top, when the runs logged them.
BUDGET_FIELDS = (
    "dataset",
    "model",
    "model_width",
    "subset",
    "val_size",
    "epochs",
    "batch_size",
    "optimizer",
    "lr",
    "min_lr",
    "lr_schedule_by",
    "momentum",
    "weight_decay",
    "train_crop",
    "epoch_test_subset",
    "precision",
)


def welch_p(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Two-sided Welch t-test p-value of mean(a) != mean(b); None below 2 values a side, and
    1.0 when neither side varies and the means agree."""
    if len(a) < 2 or len(b) < 2:
        return None
    from scipy import stats

    if statistics.stdev(a) == 0 and statistics.stdev(b) == 0:
        return 1.0 if statistics.fmean(a) == statistics.fmean(b) else 0.0
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


@dataclass
class Row:
    label: str
    method: str
    group: SeedGroup
    stats: dict[str, Stat]
    delta: dict[str, float]
    p: dict[str, float | None]
    rank: int = 0


def write_results(
    experiment: str,
    page: str | Path,
    methods: Sequence[str] = (),
    seeds: Sequence[int] = (),
    command: str = "",
    title: str = "",
    pilots: Sequence = (),
    preset: str = "",
) -> Path:
    """Summarise `experiment`'s seed groups in MLflow and write the page and its assets.
    `methods` and `seeds` are what the sweep meant to run (a missing one is marked);
    `command` is the command the page says made it; `pilots` (presets.Pilot) the short runs
    that chose the budget, drawn when the store holds them."""
    from . import seed_groups
    from .tracking import connect, display_uri, experiment_runs

    client = connect()
    groups = seed_groups.summarize(experiment, list(seeds) or None, client=client)
    runs = experiment_runs(experiment, statuses=("FINISHED", *seed_groups.UNFINISHED))
    _check_one_setting(experiment, runs)
    if not any(g.runs for g in groups):
        raise CompareError(
            f"experiment {experiment!r} has no finished runs to report; run the sweep first"
        )
    rows = _rows(groups)
    page = Path(page)
    assets = page.with_suffix("")
    assets.mkdir(parents=True, exist_ok=True)
    histories = {
        run_id: {
            key: [m.value for m in sorted(client.get_metric_history(run_id, key), key=_step)]
            for key in ("train_seconds", "eval_seconds", *(k for k, _ in CURVES))
        }
        for row in rows
        for run_id in (r["run_id"] for r in row.group.runs.values())
    }
    _seed_figure(rows, assets / "seeds.png")
    _curve_figure(rows, histories, assets / "curves.png")
    samples = _sample_grid(client, rows, assets / "adautomix-samples.png")
    (assets / "table.csv").write_text(_csv(rows))
    pilot_lines = _pilot_section(client, pilots, preset, assets, rows)
    finished = [r for row in rows for r in row.group.runs.values()]
    text = _page(
        experiment,
        title,
        command,
        display_uri(),
        rows,
        finished,
        histories,
        methods,
        seeds,
        assets.name,
        samples,
        pilot_lines,
    )
    page.write_text(text)
    return page


def sweep_command(preset: str, page: str | Path) -> str:
    """The one command that runs a sweep preset through the pipeline here and writes its page."""
    return (
        f"python -m pipeline run --local --sweep --preset {preset} --num-gpus 0 "
        f"--results-page {page}"
    )


# --- grouping and statistics ---------------------------------------------------------------------


def _check_one_setting(experiment: str, runs: list[dict[str, Any]]) -> None:
    settings = {}
    for run in runs:
        found = parse_run(run)
        if found is not None:
            settings.setdefault(found.setting, run["run_id"])
    if len(settings) > 1:
        keys = sorted({k for s in settings for k, _ in s})
        differ = [k for k in keys if len({dict(s).get(k) for s in settings}) > 1]
        shown = "; ".join(
            f"{k}: {', '.join(sorted({str(dict(s).get(k, '-')) for s in settings}))}"
            for k in differ
        )
        raise CompareError(
            f"experiment {experiment!r} holds runs of {len(settings)} budgets, which one page "
            f"must not mix; they differ in {shown}. Give each budget its own experiment "
            "(--experiment), or delete the runs of the other budget"
        )


def _rows(groups: list[SeedGroup]) -> list[Row]:
    from .config import METHODS

    reference = next((g for g in groups if g.method == REFERENCE and g.runs), None)
    rows = []
    for group in groups:
        stats, delta, p = {}, {}, {}
        for metric in (ONLINE, EMA, *MEDIANS, *(k for k, _ in ROBUSTNESS)):
            values = group.values(metric)
            if not values:
                continue
            stats[metric] = Stat(tuple(values))
            base = reference.values(metric) if reference is not None else []
            if base and group is not reference:
                delta[metric] = stats[metric].mean - statistics.fmean(base)
                p[metric] = welch_p(values, base)
        rows.append(Row(group.label, group.method, group, stats, delta, p))
    ranked = sorted((r for r in rows if EMA in r.stats), key=lambda r: -r.stats[EMA].mean)
    for i, row in enumerate(ranked, 1):
        row.rank = i
    order = {m: i for i, m in enumerate(METHODS)}
    return sorted(rows, key=lambda r: (order.get(r.method, len(order)), r.label))


def _step(metric) -> tuple[int, int]:
    return (metric.step, metric.timestamp)


# --- the page ------------------------------------------------------------------------------------


def _page(
    experiment: str,
    title: str,
    command: str,
    store: str,
    rows: list[Row],
    finished: list[dict[str, Any]],
    histories: dict[str, dict[str, list[float]]],
    methods: Sequence[str],
    seeds: Sequence[int],
    assets: str,
    samples: str | None,
    pilot_lines: list[str],
) -> str:
    params = finished[0]["params"]
    tags = [r["tags"] for r in finished]
    commits = sorted({t.get("git_commit", "unknown") for t in tags})
    machines = sorted({t.get("machine", "not recorded") for t in tags})
    start = min(r["start_time"] for r in finished)
    end = max(r["end_time"] or r["start_time"] for r in finished)
    budget = ", ".join(f"{k} {params[k]}" for k in BUDGET_FIELDS if k in params)
    test_metrics = (
        ", ".join(f"`{m}`" for m in sorted({t.get("eval_test_metrics", "") for t in tags} - {""}))
        or "not recorded"
    )
    lines = [
        f"# {title or f'Results: {experiment}'}",
        "",
        "Generated by `adautomix results` from the MLflow store; do not edit by hand.",
        "",
        f"- **Command:** `{command}`" if command else "- **Command:** not recorded",
        f"- **Store:** `{store}`, experiment `{experiment}`",
        f"- **Commit:** {', '.join(f'`{c[:12]}`' for c in commits)}",
        f"- **Dates:** {_utc(start)} to {_utc(end)} (UTC, first run's start to last run's end)",
        f"- **Machine:** {'; '.join(machines)}",
        f"- **Budget:** {budget}",
        "",
    ]
    lines += pilot_lines
    lines += _missing_section(rows, methods, seeds)
    lines += _top1_table(rows)
    lines += _robustness_table(rows, test_metrics)
    lines += [
        f"![every seed's test top-1, the mean and ± std]({assets}/seeds.png)",
        "",
        f"![training curves, mean ± std over seeds]({assets}/curves.png)",
        "",
    ]
    if samples:
        lines += [
            f"AdAutoMix's mixed samples ({samples}):",
            "",
            f"![AdAutoMix's mixed samples]({assets}/adautomix-samples.png)",
            "",
        ]
    lines += _reading(rows)
    lines += _cost_section(rows, histories, start, end)
    lines += [f"CSV of every figure in the tables: [{assets}/table.csv]({assets}/table.csv)", ""]
    return "\n".join(lines)


def _missing_section(rows: list[Row], methods: Sequence[str], seeds: Sequence[int]) -> list[str]:
    notes = []
    present = {r.method for r in rows if r.group.runs}
    for method in methods:
        if method not in present:
            notes.append(f"- {method}: no finished run in the store")
    for row in rows:
        for seed, why in sorted(row.group.missing.items()):
            notes.append(f"- {row.label}, seed {seed}: {why}")
    if not notes:
        if not (methods and seeds):
            return ["Every run in the store finished.", ""]
        return [
            f"Every run finished: {_count(len(methods), 'method')} × {_count(len(seeds), 'seed')}.",
            "",
        ]
    return ["**Missing runs** (counted as missing, never averaged away):", "", *notes, ""]


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _cell(stat: Stat | None) -> str:
    if stat is None:
        return "-"
    return f"{stat.mean:.2f}" + (f" ± {stat.std:.2f}" if stat.std is not None else "")


def _delta(row: Row, metric: str) -> str:
    if metric not in row.delta:
        return "-"
    p = row.p.get(metric)
    return f"{row.delta[metric]:+.2f}" + (f" (p {p:.3f})" if p is not None else "")


def _top1_table(rows: list[Row]) -> list[str]:
    header = [
        "method",
        "seeds",
        "top-1 EMA",
        "Δ EMA (Welch p)",
        "top-1 online",
        "Δ online (Welch p)",
        "median last 10, EMA",
        "median last 10, online",
        "rank",
    ]
    body = [
        [
            row.label,
            str(row.stats[EMA].n if EMA in row.stats else 0),
            _cell(row.stats.get(EMA)),
            _delta(row, EMA),
            _cell(row.stats.get(ONLINE)),
            _delta(row, ONLINE),
            _cell(row.stats.get(MEDIANS[1])),
            _cell(row.stats.get(MEDIANS[0])),
            str(row.rank or "-"),
        ]
        for row in rows
    ]
    return [
        "## Test top-1 (%)",
        "",
        "The checkpoint validation selected, on the whole test split; mean ± std over seeds. "
        "Δ is to Vanilla's mean, with the two-sided Welch t-test p-value over seeds. The "
        "medians are the paper's statistic, of each epoch's test top-1 on the first "
        "`epoch_test_subset` test images. Ranked by the EMA network, the one registered.",
        "",
        *markdown_table(header, body),
        "",
    ]


def _robustness_table(rows: list[Row], metrics_note: str) -> list[str]:
    shown = [(k, name) for k, name in ROBUSTNESS if any(k in r.stats for r in rows)]
    if not shown:
        return []
    header = ["method", *(name for _, name in shown)]
    body = [[row.label, *(_cell(row.stats.get(k)) for k, _ in shown)] for row in rows]
    return [
        "## Robustness (Table 3 of the paper), EMA network",
        "",
        "As the evaluate step measured the selected EMA network: corruption top-1 pooled over "
        "the 19 generated corruptions × 5 severities, FGSM error at ε 8/255 (pixel-space, and "
        "the paper's normalised-space variant), each on the first N test images its "
        "`images=N` names (all of them without); ECE (10 bins) on the whole test split. The "
        f"evaluate step's metrics: {metrics_note}.",
        "",
        *markdown_table(header, body),
        "",
    ]


def _reading(rows: list[Row]) -> list[str]:
    """What the numbers say: which Δ exceed the seeds' spread, which do not."""
    above = [r for r in rows if r.p.get(EMA) is not None and r.p[EMA] < SIGNIFICANT]
    within = [r for r in rows if r.p.get(EMA) is not None and r.p[EMA] >= SIGNIFICANT]
    untested = [r for r in rows if r.method != REFERENCE and r.p.get(EMA) is None and r.stats]
    ranked = sorted((r for r in rows if r.rank), key=lambda r: r.rank)

    def said(items: list[Row]) -> str:
        return (
            ", ".join(f"{r.label} ({r.delta[EMA]:+.2f}, p {r.p[EMA]:.3f})" for r in items) or "none"
        )

    text = [
        "## What the numbers say",
        "",
        f"Against Vanilla, on the EMA network's test top-1, the differences that exceed the "
        f"seeds' spread (Welch p < {SIGNIFICANT}): {said(above)}. Within the spread: "
        f"{said(within)}."
        + (f" Too few seeds to test: {', '.join(r.label for r in untested)}." if untested else ""),
    ]
    own = next((r for r in rows if r.method == "adautomix" and r.rank), None)
    if own is not None and ranked:
        best = ranked[0]
        text += [
            "",
            f"AdAutoMix ranks {own.rank} of {len(ranked)} at this budget "
            f"({_cell(own.stats[EMA])} %"
            + (
                f", {own.delta[EMA]:+.2f} points from Vanilla, p {own.p[EMA]:.3f}"
                if own.p.get(EMA) is not None
                else ""
            )
            + ")"
            + (
                f"; the first is {best.label} ({_cell(best.stats[EMA])} %)."
                if best is not own
                else "."
            ),
        ]
    text += [
        "",
        "With three seeds a Welch test has little power: a p-value above 0.05 means the seeds "
        "cannot tell the difference apart from noise, not that there is none; and twenty-odd "
        "comparisons at 0.05 expect about one false alarm. One small budget on one dataset "
        "says nothing about full-size training, where the paper's gains were measured.",
        "",
    ]
    return text


def _cost_section(
    rows: list[Row], histories: dict[str, dict[str, list[float]]], start: int, end: int
) -> list[str]:
    """Per method, the runs' time by part. The fixed cost is what is neither training nor
    evaluation: process starts, imports, the data check, MLflow, the confusion matrix and the
    logged model; runs whose evaluate step did not time its evaluation (evaluate_seconds) count
    that evaluation in it too, and the page says so."""
    figures_of: dict[str, list[tuple[float, ...]]] = {}
    for row in rows:
        for run in row.group.runs.values():
            metrics, history = run["metrics"], histories[run["run_id"]]
            train_step = metrics.get("step_seconds_train")
            evaluate_step = metrics.get("step_seconds_evaluate")
            if train_step is None or evaluate_step is None:
                continue
            training, evaluation = sum(history["train_seconds"]), sum(history["eval_seconds"])
            final = metrics.get("evaluate_seconds", 0.0)
            fixed = train_step + evaluate_step - training - evaluation - final
            figures_of.setdefault(row.label, []).append(
                (train_step, training, evaluation, evaluate_step, final, fixed)
            )
    if not figures_of:
        return []
    timed = all(f[4] > 0 for figures in figures_of.values() for f in figures)
    header = [
        "method",
        "runs",
        "train step (s)",
        "training (s)",
        "per-epoch evaluation (s)",
        "evaluate step (s)",
        *(["final evaluation (s)"] if timed else []),
        "fixed cost (s)",
        "fixed share",
    ]
    body = []
    for label, figures in figures_of.items():
        means = [statistics.fmean(f[i] for f in figures) for i in range(6)]
        shown = means[:4] + ([means[4]] if timed else []) + [means[5]]
        body.append(
            [
                label,
                str(len(figures)),
                *(f"{v:.1f}" for v in shown),
                f"{means[5] / (means[0] + means[3]):.0%}",
            ]
        )
    every = [f for figures in figures_of.values() for f in figures]
    fixed = statistics.fmean(f[5] for f in every)
    share = sum(f[5] for f in every) / sum(f[0] + f[3] for f in every)
    log.info(
        "the pipeline's fixed cost: %.1f s a run on average (%.0f%% of the train and evaluate "
        "steps' time) over %d runs; the page's \"What it cost\" has it per method",
        fixed,
        100 * share,
        len(every),
    )
    counted = (
        "the confusion matrix and the logged model"
        if timed
        else "the confusion matrix, the logged model and, since these runs' evaluate step did "
        "not time it apart, the final evaluation itself (the whole test split, the validation "
        "split and the robustness protocols, both networks)"
    )
    return [
        "## What it cost",
        "",
        f"Wall time from the first run's start to the last run's end: "
        f"{(end - start) / 60000:.1f} minutes for {len(every)} runs. Per run, the train step "
        "and the evaluate step from their processes' start; training and the per-epoch "
        "evaluation as the engine timed them; the fixed cost is the rest: process starts, "
        f"imports, the data check, MLflow, {counted}. On average {fixed:.1f} s a run, "
        f"{share:.0%} of the runs' time.",
        "",
        *markdown_table(header, body),
        "",
    ]


def _utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M")


def _csv(rows: list[Row]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["method", "metric", "n", "mean", "std", "delta_vs_vanilla", "welch_p", "rank"])
    for row in rows:
        for metric, stat in row.stats.items():
            writer.writerow(
                [
                    row.label,
                    metric,
                    stat.n,
                    f"{stat.mean:.4f}",
                    "" if stat.std is None else f"{stat.std:.4f}",
                    "" if metric not in row.delta else f"{row.delta[metric]:.4f}",
                    "" if row.p.get(metric) is None else f"{row.p[metric]:.4g}",
                    row.rank or "",
                ]
            )
    return buffer.getvalue()


# --- the pilot ----------------------------------------------------------------------------------


def _pilot_section(
    client, pilots: Sequence, preset: str, assets: Path, rows_of_table: list[Row]
) -> list[str]:
    """The pilot runs that chose the budget, set beside the table's own seed-0 runs of the
    pilot's methods: a row each (budget, how far it overfitted, what it reached) and their
    curves; the pilots from their own experiments in the same store."""
    from .tracking import experiment_runs

    if not pilots:
        return []
    runs, absent = [], []
    for pilot in pilots:
        if client.get_experiment_by_name(pilot.experiment) is None:
            absent.append(pilot)
            continue
        found = sorted(experiment_runs(pilot.experiment), key=lambda r: r["start_time"])
        runs += [(pilot.experiment, r) for r in found]
    methods = [r["params"].get("method") for _, r in runs]
    for row in rows_of_table:
        first = row.group.seeds[:1]
        if row.method in methods and first and first[0] == "0":
            runs.append(("this table", row.group.runs["0"]))
    rows, curves = [], []
    for source, run in runs:
        params, metrics = run["params"], run["metrics"]
        history = {
            key: [m.value for m in sorted(client.get_metric_history(run["run_id"], key), key=_step)]
            for key in ("train_loss", "val_top1_ema")
        }
        budget = f"{params.get('subset')} images × {params.get('epochs')} epochs"
        curves.append((f"{params.get('method')}, {budget}", history))
        rows.append(
            [
                source,
                params.get("method", "?"),
                budget,
                f"{history['train_loss'][-1]:.3f}" if history["train_loss"] else "-",
                f"{max(history['val_top1_ema']):.2f}" if history["val_top1_ema"] else "-",
                f"{metrics[EMA]:.2f}" if EMA in metrics else "-",
            ]
        )
    lines = [
        "## Why this budget",
        "",
        "Mixing regularises: it pays where a network can overfit its training images, and it "
        "needs steps to fit mixed targets. The pilot below (seed 0, in the same store) trains "
        "Vanilla and MixUp on the table's recipe with twice the images for a third of the "
        "epochs, beside the table's own seed-0 runs of the two; a pilot is `python -m pipeline "
        f"run --local --sweep --preset {preset or 'NAME'} --num-gpus 0` with the flags named.",
        "",
    ]
    for pilot in pilots:
        lines.append(
            f"- `{pilot.experiment}`: `{pilot.flags}`"
            + (" (not in this store)" if pilot in absent else "")
        )
    lines.append("")
    if rows:
        lines += markdown_table(
            [
                "experiment",
                "method",
                "budget",
                "last training loss",
                "best validation top-1, EMA",
                "test top-1, EMA",
            ],
            rows,
        )
        lines += ["", f"![the pilot runs' curves]({assets.name}/pilot.png)", ""]
        _pilot_figure(curves, assets / "pilot.png")
    return lines


def _pilot_figure(curves: list[tuple[str, dict[str, list[float]]]], path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9.5, 3.6))
    axes = fig.subplots(1, 2)
    for label, history in curves:
        for ax, key in zip(axes, ("train_loss", "val_top1_ema")):
            ax.plot(range(1, len(history[key]) + 1), history[key], label=label)
    axes[0].set(xlabel="epoch", title="training loss", yscale="log")
    axes[1].set(xlabel="epoch", title="validation top-1, EMA (%)")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)


# --- figures -------------------------------------------------------------------------------------


def _save(fig, path: Path) -> None:
    # no Software or date chunk: the same numbers give the same bytes
    fig.savefig(path, dpi=110, bbox_inches="tight", metadata={"Software": None})


def _seed_figure(rows: list[Row], path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9.5, 3.8))
    axes = fig.subplots(1, 2, sharey=True)
    for ax, metric, name in zip(axes, (EMA, ONLINE), ("EMA network", "online network")):
        shown = [r for r in rows if metric in r.stats]
        for x, row in enumerate(shown):
            stat = row.stats[metric]
            ax.plot([x] * stat.n, stat.values, "o", color="tab:blue", alpha=0.45, markersize=4)
            ax.errorbar(
                [x + 0.18],
                [stat.mean],
                yerr=[stat.std or 0.0],
                fmt="s",
                color="black",
                markersize=4,
                capsize=3,
            )
        reference = next((r for r in shown if r.method == REFERENCE), None)
        if reference is not None:
            ax.axhline(reference.stats[metric].mean, color="grey", linestyle="--", linewidth=0.8)
        ax.set_xticks(range(len(shown)), [r.label for r in shown], rotation=45, ha="right")
        ax.set_title(f"test top-1, {name}", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("top-1 (%): seeds (dots), mean ± std (squares)")
    fig.tight_layout()
    _save(fig, path)


def _curve_figure(
    rows: list[Row], histories: dict[str, dict[str, list[float]]], path: Path
) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9.5, 3.6))
    axes = fig.subplots(1, len(CURVES))
    for ax, (key, name) in zip(axes, CURVES):
        for row in rows:
            if row.method not in CURVE_METHODS:
                continue
            series = [histories[r["run_id"]][key] for r in row.group.runs.values()]
            series = [s for s in series if s]
            if not series:
                continue
            length = min(len(s) for s in series)
            epochs = list(range(1, length + 1))
            means = [statistics.fmean(s[i] for s in series) for i in range(length)]
            spread = [
                statistics.stdev(s[i] for s in series) if len(series) > 1 else 0.0
                for i in range(length)
            ]
            ax.plot(epochs, means, label=f"{row.label} (n={len(series)})")
            ax.fill_between(
                epochs,
                [m - s for m, s in zip(means, spread)],
                [m + s for m, s in zip(means, spread)],
                alpha=0.2,
            )
        ax.set(xlabel="epoch", title=name)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)


def _sample_grid(client, rows: list[Row], path: Path) -> str | None:
    """Copy the last mixed-sample grid AdAutoMix's lowest seed logged; says which it is."""
    import shutil
    import tempfile

    row = next((r for r in rows if r.method == "adautomix" and r.group.runs), None)
    if row is None:
        return None
    seed = row.group.seeds[0]
    run_id = row.group.runs[seed]["run_id"]
    grids = sorted(a.path for a in client.list_artifacts(run_id, "samples"))
    if not grids:
        return None
    with tempfile.TemporaryDirectory() as folder:
        local = client.download_artifacts(run_id, grids[-1], folder)
        shutil.copyfile(local, path)
    return f"seed {seed}, `{grids[-1]}`: sources, masks and the mixed images with their λ"
